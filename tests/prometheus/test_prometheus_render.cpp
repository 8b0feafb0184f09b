// Rendering: escaping, numbers, format negotiation and the exposition text of
// a snapshot built by hand, compared with text written out by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>

#include <microsentinel/prometheus/format.hpp>
#include <microsentinel/prometheus/render.hpp>
#include <microsentinel/prometheus/text.hpp>

namespace prom = microsentinel::prometheus;
using microsentinel::direction;

namespace {

std::string label_value(std::string_view v)
{
    std::string out;
    prom::append_label_value(out, v);
    return out;
}

std::string number(double v)
{
    std::string out;
    prom::append_double(out, v);
    return out;
}

prom::metrics_snapshot hand_built_snapshot()
{
    prom::metrics_snapshot s;
    s.flow_costs = {
        {42, false, direction::rx, 1, 2.5},
        {7, false, direction::rx, 1, 1.0},
        {0, true, direction::rx, 1, 0.5},
        {18446744073709551615ull, false, direction::tx, 2, 4.0},
        {0, true, direction::tx, 2, 0.0},
    };
    s.latest_window_start_ns = 1'500'000'000;
    s.samples[0][1] = 3;
    s.samples[1][2] = 2;
    s.dropped = {{"ring_full", 1}, {"throttled", 0}, {"truncated", 4}};
    s.layout = prom::layout_info{"v2", "capture_header"};
    s.writer = prom::writer_health{10, 1, 4096};
    s.data_objects_registered = 3;
    s.exporter = {5, 2, 0, 1};
    s.http = prom::http_stats{20, 1, 2, 3, 4, 5, 6};
    return s;
}

} // namespace

TEST_CASE("label values escape backslash, double quote and line feed, and nothing else")
{
    CHECK(label_value("plain value") == "plain value");
    CHECK(label_value("a\\b") == "a\\\\b");
    CHECK(label_value("say \"hi\"") == "say \\\"hi\\\"");
    CHECK(label_value("two\nlines") == "two\\nlines");
    CHECK(label_value("tab\tand ü") == "tab\tand ü");
    CHECK(label_value("\\\"\n") == "\\\\\\\"\\n");
}

TEST_CASE("HELP text escapes double quotes only in OpenMetrics")
{
    std::string text, om;
    prom::append_help_text(text, "a \"b\" \\ c\nd", false);
    prom::append_help_text(om, "a \"b\" \\ c\nd", true);
    CHECK(text == "a \"b\" \\\\ c\\nd");
    CHECK(om == "a \\\"b\\\" \\\\ c\\nd");
}

TEST_CASE("numbers are written so that Prometheus parses back the same value")
{
    CHECK(number(2.5) == "2.5");
    CHECK(number(3.0) == "3");
    CHECK(number(0.1) == "0.1");
    CHECK(number(-0.25) == "-0.25");
    CHECK(number(1e21) == "1e+21");
    CHECK(number(std::numeric_limits<double>::infinity()) == "+Inf");
    CHECK(number(-std::numeric_limits<double>::infinity()) == "-Inf");
    CHECK(number(std::nan("")) == "NaN");
    std::string u;
    prom::append_uint(u, 18446744073709551615ull);
    CHECK(u == "18446744073709551615");
}

TEST_CASE("the Accept header selects OpenMetrics only when the scraper prefers it")
{
    using prom::exposition_format;
    SUBCASE("what Prometheus 2.42 sends")
    {
        CHECK(prom::negotiate_format("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1") ==
              exposition_format::openmetrics);
    }
    SUBCASE("explicit OpenMetrics, any case and spacing")
    {
        CHECK(prom::negotiate_format("Application/OpenMetrics-Text; version=1.0.0") == exposition_format::openmetrics);
    }
    SUBCASE("no header, wildcards and plain text get the text format")
    {
        CHECK(prom::negotiate_format("") == exposition_format::text);
        CHECK(prom::negotiate_format("*/*") == exposition_format::text);
        CHECK(prom::negotiate_format("text/plain;version=0.0.4") == exposition_format::text);
        CHECK(prom::negotiate_format("application/json") == exposition_format::text);
    }
    SUBCASE("quality values decide")
    {
        CHECK(prom::negotiate_format("application/openmetrics-text;q=0.2, text/plain;q=0.5") ==
              exposition_format::text);
        CHECK(prom::negotiate_format("text/plain;q=0.3, application/openmetrics-text;q=0.9") ==
              exposition_format::openmetrics);
        CHECK(prom::negotiate_format("application/openmetrics-text;q=0") == exposition_format::text);
        CHECK(prom::negotiate_format("application/openmetrics-text;q=bogus") == exposition_format::text);
    }
}

TEST_CASE("the text format shows each family with HELP and TYPE, counters named _total")
{
    const std::string out = prom::render(hand_built_snapshot(), prom::exposition_format::text);

    CHECK(out.rfind("# HELP micro_sentinel_flow_cost Normalized cost of a flow", 0) == 0);
    CHECK(out.find("# TYPE micro_sentinel_flow_cost gauge\n"
                   "micro_sentinel_flow_cost{flow=\"42\",direction=\"rx\",event=\"cpu_clock\"} 2.5\n"
                   "micro_sentinel_flow_cost{flow=\"7\",direction=\"rx\",event=\"cpu_clock\"} 1\n"
                   "micro_sentinel_flow_cost{flow=\"other\",direction=\"rx\",event=\"cpu_clock\"} 0.5\n"
                   "micro_sentinel_flow_cost{flow=\"18446744073709551615\",direction=\"tx\",event=\"page_faults\"} 4\n"
                   "micro_sentinel_flow_cost{flow=\"other\",direction=\"tx\",event=\"page_faults\"} 0\n"
                   "# HELP micro_sentinel_rollup_window_start_seconds ") != std::string::npos);
    CHECK(out.find("# TYPE micro_sentinel_rollup_window_start_seconds gauge\n"
                   "micro_sentinel_rollup_window_start_seconds 1.5\n") != std::string::npos);
    CHECK(out.find("# HELP micro_sentinel_samples_total Samples decoded, by direction and event.\n"
                   "# TYPE micro_sentinel_samples_total counter\n"
                   "micro_sentinel_samples_total{direction=\"rx\",event=\"cpu_clock\"} 3\n"
                   "micro_sentinel_samples_total{direction=\"rx\",event=\"page_faults\"} 0\n"
                   "micro_sentinel_samples_total{direction=\"rx\",event=\"cycles\"} 0\n"
                   "micro_sentinel_samples_total{direction=\"rx\",event=\"llc_misses\"} 0\n"
                   "micro_sentinel_samples_total{direction=\"rx\",event=\"branch_misses\"} 0\n"
                   "micro_sentinel_samples_total{direction=\"tx\",event=\"cpu_clock\"} 0\n"
                   "micro_sentinel_samples_total{direction=\"tx\",event=\"page_faults\"} 2\n"
                   "micro_sentinel_samples_total{direction=\"tx\",event=\"cycles\"} 0\n"
                   "micro_sentinel_samples_total{direction=\"tx\",event=\"llc_misses\"} 0\n"
                   "micro_sentinel_samples_total{direction=\"tx\",event=\"branch_misses\"} 0\n") !=
          std::string::npos);
    CHECK(out.find("# TYPE micro_sentinel_samples_dropped_total counter\n"
                   "micro_sentinel_samples_dropped_total{reason=\"ring_full\"} 1\n"
                   "micro_sentinel_samples_dropped_total{reason=\"throttled\"} 0\n"
                   "micro_sentinel_samples_dropped_total{reason=\"truncated\"} 4\n") != std::string::npos);
    CHECK(out.find("# TYPE micro_sentinel_sample_layout_info gauge\n"
                   "micro_sentinel_sample_layout_info{layout=\"v2\",source=\"capture_header\"} 1\n") !=
          std::string::npos);
    CHECK(out.find("# TYPE micro_sentinel_writer_rows_written_total counter\n"
                   "micro_sentinel_writer_rows_written_total 10\n") != std::string::npos);
    CHECK(out.find("# TYPE micro_sentinel_writer_batches_failed_total counter\n"
                   "micro_sentinel_writer_batches_failed_total 1\n") != std::string::npos);
    CHECK(out.find("# TYPE micro_sentinel_writer_spool_bytes gauge\n"
                   "micro_sentinel_writer_spool_bytes 4096\n") != std::string::npos);
    CHECK(out.find("# TYPE micro_sentinel_data_objects_registered_total counter\n"
                   "micro_sentinel_data_objects_registered_total 3\n") != std::string::npos);
    CHECK(out.find("micro_sentinel_exporter_flows_tracked 5\n") != std::string::npos);
    CHECK(out.find("micro_sentinel_exporter_flows_evicted_total 2\n") != std::string::npos);
    CHECK(out.find("micro_sentinel_exporter_rows_untracked_total 0\n") != std::string::npos);
    CHECK(out.find("micro_sentinel_exporter_rows_late_total 1\n") != std::string::npos);
    CHECK(out.find("# TYPE micro_sentinel_exporter_http_connections_total counter\n"
                   "micro_sentinel_exporter_http_connections_total{outcome=\"scrape\"} 20\n"
                   "micro_sentinel_exporter_http_connections_total{outcome=\"not_found\"} 1\n"
                   "micro_sentinel_exporter_http_connections_total{outcome=\"method_not_allowed\"} 2\n"
                   "micro_sentinel_exporter_http_connections_total{outcome=\"bad_request\"} 3\n"
                   "micro_sentinel_exporter_http_connections_total{outcome=\"rejected_busy\"} 4\n"
                   "micro_sentinel_exporter_http_connections_total{outcome=\"timed_out\"} 5\n"
                   "micro_sentinel_exporter_http_connections_total{outcome=\"aborted\"} 6\n") != std::string::npos);
    CHECK(out.find("# UNIT") == std::string::npos);
    CHECK(out.find("# EOF") == std::string::npos);
    CHECK(out.back() == '\n');
}

TEST_CASE("OpenMetrics names counter families without _total, has info and units, and ends with # EOF")
{
    const std::string out = prom::render(hand_built_snapshot(), prom::exposition_format::openmetrics);

    CHECK(out.find("# TYPE micro_sentinel_flow_cost gauge\n"
                   "micro_sentinel_flow_cost{flow=\"42\",direction=\"rx\",event=\"cpu_clock\"} 2.5\n") !=
          std::string::npos);
    CHECK(out.find("# HELP micro_sentinel_samples Samples decoded, by direction and event.\n"
                   "# TYPE micro_sentinel_samples counter\n"
                   "micro_sentinel_samples_total{direction=\"rx\",event=\"cpu_clock\"} 3\n") != std::string::npos);
    CHECK(out.find("# TYPE micro_sentinel_samples_dropped counter\n"
                   "micro_sentinel_samples_dropped_total{reason=\"ring_full\"} 1\n") != std::string::npos);
    CHECK(out.find("# TYPE micro_sentinel_sample_layout info\n"
                   "micro_sentinel_sample_layout_info{layout=\"v2\",source=\"capture_header\"} 1\n") !=
          std::string::npos);
    CHECK(out.find("# TYPE micro_sentinel_writer_spool_bytes gauge\n"
                   "# UNIT micro_sentinel_writer_spool_bytes bytes\n"
                   "micro_sentinel_writer_spool_bytes 4096\n") != std::string::npos);
    CHECK(out.find("# TYPE micro_sentinel_rollup_window_start_seconds gauge\n"
                   "# UNIT micro_sentinel_rollup_window_start_seconds seconds\n") != std::string::npos);
    CHECK(out.find("# TYPE micro_sentinel_exporter_http_connections counter\n"
                   "micro_sentinel_exporter_http_connections_total{outcome=\"scrape\"} 20\n") != std::string::npos);
    CHECK(out.find("_total counter") == std::string::npos);
    CHECK(out.size() >= 6);
    CHECK(out.substr(out.size() - 6) == "# EOF\n");
}

TEST_CASE("label values from the pipeline are escaped in the exposition")
{
    prom::metrics_snapshot s;
    s.layout = prom::layout_info{"v2", "weird \"source\"\\\nname"};
    const std::string out = prom::render(s, prom::exposition_format::text);
    CHECK(out.find("micro_sentinel_sample_layout_info{layout=\"v2\",source=\"weird \\\"source\\\"\\\\\\nname\"} 1\n") !=
          std::string::npos);
}

TEST_CASE("optional families are absent until the pipeline reports them")
{
    const std::string out = prom::render(prom::metrics_snapshot{}, prom::exposition_format::text);
    CHECK(out.find("micro_sentinel_writer_") == std::string::npos);
    CHECK(out.find("micro_sentinel_data_objects_registered") == std::string::npos);
    CHECK(out.find("micro_sentinel_sample_layout_info") == std::string::npos);
    CHECK(out.find("micro_sentinel_rollup_window_start_seconds") == std::string::npos);
    CHECK(out.find("micro_sentinel_exporter_http_connections") == std::string::npos);
    CHECK(out.find("# TYPE micro_sentinel_flow_cost gauge\n# HELP micro_sentinel_rollup") == std::string::npos);
    CHECK(out.find("# TYPE micro_sentinel_flow_cost gauge\n# HELP micro_sentinel_samples_total") != std::string::npos);
}
