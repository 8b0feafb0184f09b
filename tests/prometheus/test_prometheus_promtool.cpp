// `promtool check metrics` (Debian package prometheus) on what the renderer
// writes: the parser and the linter of Prometheus itself.
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <sys/wait.h>

#include <microsentinel/prometheus/metrics_state.hpp>
#include <microsentinel/prometheus/pipeline.hpp>
#include <microsentinel/prometheus/render.hpp>

#include "requirements.hpp"
#include "test_helpers.hpp"

namespace prom = microsentinel::prometheus;
namespace mt = microsentinel::testing;
using microsentinel::direction;

namespace {

struct check_result {
    int status;
    std::string output;
};

check_result promtool_check(const std::string& promtool, const std::string& exposition)
{
    mt::temp_dir dir;
    mt::write_file(dir / "metrics.txt", exposition);
    const std::string cmd = promtool + " check metrics < " + (dir / "metrics.txt").string() + " > " +
                            (dir / "out.txt").string() + " 2>&1";
    int rc = std::system(cmd.c_str());
    return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, mt::read_file(dir / "out.txt")};
}

// Every family, with the pipeline adapters filling what the agent will fill.
prom::metrics_snapshot everything()
{
    prom::metrics_config cfg;
    cfg.top_k = 3;
    prom::metrics_state m(cfg);
    std::vector<microsentinel::flow_rollup_row> rows;
    for (std::uint64_t flow = 1; flow <= 10; ++flow) {
        rows.push_back({5'000'000'000, flow, direction::rx, MS_EVT_CPU_CLOCK, 0, 0, 0, flow, double(flow) / 4});
        rows.push_back({5'000'000'000, flow << 40, direction::tx, MS_EVT_PAGE_FAULTS, 0, 0, 0, 1, 0.125});
    }
    m.add_flow_rows(rows, prom::metrics_state::clock::now());
    m.count_sample(direction::rx, MS_EVT_CPU_CLOCK);
    m.count_sample(direction::tx, 1234);
    microsentinel::decode_stats stats;
    stats.skipped = {1, 0, 2, 0, 0};
    prom::set_decode_stats(m, stats);
    prom::set_collector_counters(m, {100, 3, 4});
    prom::set_layout(m, microsentinel::negotiated_layout{microsentinel::layout_id::v2, 320,
                                                         microsentinel::layout_source::capture_header, {}});
    m.set_writer_health({1000, 2, 65536});
    m.set_data_objects_registered(12);
    m.set_http_stats({5, 1, 1, 0, 0, 2, 0});
    m.publish(prom::metrics_state::clock::now());
    return *m.current();
}

} // namespace

TEST_CASE("promtool accepts the text format of every family without lint findings")
{
    const std::string promtool = mt::require_program("promtool", "prometheus");
    const std::string text = prom::render(everything(), prom::exposition_format::text);
    REQUIRE(text.find("micro_sentinel_writer_spool_bytes 65536") != std::string::npos);
    REQUIRE(text.find("micro_sentinel_exporter_http_connections_total{outcome=\"timed_out\"} 2") != std::string::npos);
    auto r = promtool_check(promtool, text);
    INFO(r.output);
    CHECK(r.status == 0);
    CHECK(r.output.empty());
}

TEST_CASE("promtool accepts label values that need escaping")
{
    const std::string promtool = mt::require_program("promtool", "prometheus");
    prom::metrics_snapshot s;
    s.layout = prom::layout_info{"v2", "a \"quoted\" \\ back\nslash"};
    s.dropped = {{"reason with \"quotes\"", 1}};
    auto r = promtool_check(promtool, prom::render(s, prom::exposition_format::text));
    INFO(r.output);
    CHECK(r.status == 0);
}

TEST_CASE("promtool rejects what the exporter must never write (the check can fail)")
{
    const std::string promtool = mt::require_program("promtool", "prometheus");
    auto unescaped = promtool_check(promtool, "# TYPE x gauge\nx{l=\"a\"b\"} 1\n");
    CHECK(unescaped.status != 0);
    auto lint = promtool_check(promtool, "# HELP x_things x\n# TYPE x_things counter\nx_things 1\n");
    CHECK(lint.status != 0);
    CHECK(lint.output.find("_total") != std::string::npos);
}
