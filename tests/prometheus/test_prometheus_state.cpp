// metrics_state: top K per (direction, event) with an "other" series that
// keeps totals, windows, staleness, limits, and the pipeline adapters.
#include <doctest/doctest.h>

#include <chrono>
#include <vector>

#include <microsentinel/prometheus/metrics_state.hpp>
#include <microsentinel/prometheus/pipeline.hpp>

namespace prom = microsentinel::prometheus;
using microsentinel::direction;
using microsentinel::flow_rollup_row;
using clock_type = prom::metrics_state::clock;
using namespace std::chrono_literals;

namespace {

const clock_type::time_point t0{std::chrono::hours(1)};

flow_rollup_row row(std::uint64_t window, std::uint64_t flow, direction d, std::uint32_t event, double cost)
{
    return flow_rollup_row{window, flow, d, event, 0, 0x401000, 0, 1, cost};
}

std::vector<prom::flow_cost_series> publish(prom::metrics_state& m, clock_type::time_point now)
{
    m.publish(now);
    return m.current()->flow_costs;
}

prom::flow_cost_series flow(std::uint64_t id, direction d, std::uint32_t ev, double cost)
{
    return {id, false, d, ev, cost};
}

prom::flow_cost_series other(direction d, std::uint32_t ev, double cost) { return {0, true, d, ev, cost}; }

} // namespace

TEST_CASE("a group exports its top K flows by cost and sums the rest into flow=other")
{
    prom::metrics_config cfg;
    cfg.top_k = 2;
    prom::metrics_state m(cfg);
    const std::vector<flow_rollup_row> rows = {
        row(1000, 11, direction::rx, 1, 1.0), row(1000, 12, direction::rx, 1, 5.0),
        row(1000, 13, direction::rx, 1, 2.0), row(1000, 14, direction::rx, 1, 4.0),
        row(1000, 15, direction::rx, 1, 3.0), row(1000, 21, direction::tx, 1, 0.5),
    };
    m.add_flow_rows(rows, t0);
    const auto series = publish(m, t0);
    const std::vector<prom::flow_cost_series> expected = {
        flow(12, direction::rx, 1, 5.0), flow(14, direction::rx, 1, 4.0), other(direction::rx, 1, 6.0),
        flow(21, direction::tx, 1, 0.5), other(direction::tx, 1, 0.0),
    };
    CHECK(series == expected);

    double rx_total = 0;
    for (const auto& s : series)
        if (s.dir == direction::rx)
            rx_total += s.cost;
    CHECK(rx_total == 15.0);
    CHECK(m.current()->exporter.flows_tracked == 6);
}

TEST_CASE("equal costs rank by flow id, so the output is deterministic")
{
    prom::metrics_config cfg;
    cfg.top_k = 2;
    prom::metrics_state m(cfg);
    const std::vector<flow_rollup_row> rows = {row(0, 9, direction::tx, 2, 1.0), row(0, 3, direction::tx, 2, 1.0),
                                               row(0, 5, direction::tx, 2, 1.0)};
    m.add_flow_rows(rows, t0);
    const std::vector<prom::flow_cost_series> expected = {
        flow(3, direction::tx, 2, 1.0), flow(5, direction::tx, 2, 1.0), other(direction::tx, 2, 1.0)};
    CHECK(publish(m, t0) == expected);
}

TEST_CASE("a flow's value is its cost in the latest window")
{
    prom::metrics_state m;
    SUBCASE("rows of one window add up, also across calls")
    {
        const std::vector<flow_rollup_row> a = {row(1000, 1, direction::rx, 1, 1.5),
                                                row(1000, 1, direction::rx, 1, 2.0)};
        const std::vector<flow_rollup_row> b = {row(1000, 1, direction::rx, 1, 0.5)};
        m.add_flow_rows(a, t0);
        m.add_flow_rows(b, t0);
        const std::vector<prom::flow_cost_series> expected = {flow(1, direction::rx, 1, 4.0),
                                                              other(direction::rx, 1, 0.0)};
        CHECK(publish(m, t0) == expected);
        CHECK(m.current()->latest_window_start_ns == 1000);
    }
    SUBCASE("a newer window replaces the value; flows absent from it show 0 until they go stale")
    {
        const std::vector<flow_rollup_row> w1 = {row(1000, 1, direction::rx, 1, 7.0),
                                                 row(1000, 2, direction::rx, 1, 1.0)};
        const std::vector<flow_rollup_row> w2 = {row(2000, 2, direction::rx, 1, 3.0)};
        m.add_flow_rows(w1, t0);
        m.add_flow_rows(w2, t0 + 1s);
        const std::vector<prom::flow_cost_series> expected = {
            flow(2, direction::rx, 1, 3.0), flow(1, direction::rx, 1, 0.0), other(direction::rx, 1, 0.0)};
        CHECK(publish(m, t0 + 1s) == expected);
        CHECK(m.current()->latest_window_start_ns == 2000);
    }
    SUBCASE("rows of an older window are counted as late and not shown")
    {
        const std::vector<flow_rollup_row> w2 = {row(2000, 1, direction::rx, 1, 3.0)};
        const std::vector<flow_rollup_row> late = {row(1000, 1, direction::rx, 1, 9.0),
                                                   row(1000, 2, direction::rx, 1, 9.0)};
        m.add_flow_rows(w2, t0);
        m.add_flow_rows(late, t0);
        const std::vector<prom::flow_cost_series> expected = {flow(1, direction::rx, 1, 3.0),
                                                              other(direction::rx, 1, 0.0)};
        CHECK(publish(m, t0) == expected);
        CHECK(m.current()->exporter.rows_late == 2);
    }
}

TEST_CASE("a flow not named by any row for the staleness interval is removed with its series")
{
    prom::metrics_config cfg;
    cfg.staleness = 10s;
    prom::metrics_state m(cfg);
    const std::vector<flow_rollup_row> first = {row(1000, 1, direction::rx, 1, 1.0),
                                                row(1000, 2, direction::tx, 1, 1.0)};
    const std::vector<flow_rollup_row> later = {row(2000, 2, direction::tx, 1, 2.0)};
    m.add_flow_rows(first, t0);
    m.add_flow_rows(later, t0 + 5s);

    CHECK(publish(m, t0 + 10s).size() == 4); // exactly the interval: still there
    const std::vector<prom::flow_cost_series> expected = {flow(2, direction::tx, 1, 2.0), other(direction::tx, 1, 0.0)};
    CHECK(publish(m, t0 + 10s + 1ns) == expected); // the rx group is gone, "other" included
    CHECK(m.current()->exporter.flows_evicted == 1);
    CHECK(m.current()->exporter.flows_tracked == 1);
    CHECK(publish(m, t0 + 16s).empty());
    CHECK(m.current()->exporter.flows_evicted == 2);
}

TEST_CASE("flows beyond the tracking limit are summed into other and counted")
{
    prom::metrics_config cfg;
    cfg.max_tracked_flows = 2;
    prom::metrics_state m(cfg);
    const std::vector<flow_rollup_row> rows = {row(0, 1, direction::rx, 1, 1.0), row(0, 2, direction::rx, 1, 2.0),
                                               row(0, 3, direction::rx, 1, 4.0), row(0, 4, direction::tx, 5, 8.0)};
    m.add_flow_rows(rows, t0);
    const std::vector<prom::flow_cost_series> expected = {
        flow(2, direction::rx, 1, 2.0), flow(1, direction::rx, 1, 1.0), other(direction::rx, 1, 4.0),
        other(direction::tx, 5, 8.0)};
    CHECK(publish(m, t0) == expected);
    CHECK(m.current()->exporter.rows_untracked == 2);
}

TEST_CASE("event codes this release does not know share the event=unknown series")
{
    prom::metrics_state m;
    const std::vector<flow_rollup_row> rows = {row(0, 1, direction::rx, 0, 1.0), row(0, 1, direction::rx, 99, 2.0)};
    m.add_flow_rows(rows, t0);
    m.count_sample(direction::tx, 77);
    m.count_sample(direction::tx, 6);
    m.count_sample(direction::tx, MS_EVT_BRANCH_MISSES);
    const std::vector<prom::flow_cost_series> expected = {flow(1, direction::rx, 0, 3.0), other(direction::rx, 0, 0.0)};
    CHECK(publish(m, t0) == expected);
    CHECK(m.current()->samples[1][0] == 2);
    CHECK(m.current()->samples[1][MS_EVT_BRANCH_MISSES] == 1);
}

TEST_CASE("a published snapshot does not change when the pipeline moves on")
{
    prom::metrics_state m;
    m.count_sample(direction::rx, MS_EVT_CPU_CLOCK);
    m.publish(t0);
    const auto before = m.current();
    m.count_sample(direction::rx, MS_EVT_CPU_CLOCK);
    const std::vector<flow_rollup_row> rows = {row(0, 1, direction::rx, 1, 1.0)};
    m.add_flow_rows(rows, t0);
    CHECK(m.current() == before); // unpublished changes are invisible
    m.publish(t0);
    CHECK(before->samples[0][MS_EVT_CPU_CLOCK] == 1);
    CHECK(before->flow_costs.empty());
    CHECK(m.current()->samples[0][MS_EVT_CPU_CLOCK] == 2);
    CHECK(m.current()->flow_costs.size() == 2);
}

TEST_CASE("drop reasons keep their first-reported order and take the latest cumulative value")
{
    prom::metrics_state m;
    microsentinel::decode_stats stats;
    stats.skipped = {1, 2, 3, 4, 5};
    prom::set_decode_stats(m, stats);
    prom::set_collector_counters(m, microsentinel::collector_counters{100, 7, 9});
    m.set_dropped("truncated", 10);
    m.publish(t0);
    const auto& d = m.current()->dropped;
    REQUIRE(d.size() == 7);
    const char* reasons[] = {"ring_full", "throttled", "truncated", "oversized", "bad_lbr_nr", "bad_direction",
                             "bad_padding"};
    const std::uint64_t counts[] = {9, 7, 10, 2, 3, 4, 5};
    for (std::size_t i = 0; i < 7; ++i) {
        CHECK(d[i].reason == reasons[i]);
        CHECK(d[i].count == counts[i]);
    }
}

TEST_CASE("the layout info names the layout and how it was negotiated")
{
    prom::metrics_state m;
    prom::set_layout(m, microsentinel::negotiated_layout{microsentinel::layout_id::v1, 320,
                                                         microsentinel::layout_source::btf, {}});
    m.set_writer_health({5, 1, 512});
    m.set_data_objects_registered(4);
    m.publish(t0);
    const auto s = m.current();
    REQUIRE(s->layout.has_value());
    CHECK(s->layout->layout == "v1");
    CHECK(s->layout->source == "btf");
    REQUIRE(s->writer.has_value());
    CHECK(s->writer->spool_bytes == 512);
    CHECK(s->data_objects_registered == 4);
}

TEST_CASE("a configuration that cannot work is refused with the reason")
{
    prom::metrics_config cfg;
    cfg.top_k = 0;
    CHECK_THROWS_WITH_AS(prom::metrics_state{cfg}, doctest::Contains("top_k is 0"), std::invalid_argument);
}
