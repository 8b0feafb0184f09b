#pragma once
// What the agent does with each decoded sample: resolve its data object, count
// it, write it raw, roll it up; and, about once a second, publish metrics and
// let the writer send what is due.
#include <microsentinel/capture.hpp>
#include <microsentinel/clickhouse/writer.hpp>
#include <microsentinel/data_objects.hpp>
#include <microsentinel/prometheus/http_exporter.hpp>
#include <microsentinel/prometheus/metrics_state.hpp>
#include <microsentinel/prometheus/pipeline.hpp>
#include <microsentinel/rollup.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <span>
#include <unordered_map>
#include <vector>

namespace microsentinel::agent {

// Cost per (flow, direction) over the whole run, for the final summary.
class flow_summary {
public:
    void add(std::span<const flow_rollup_row> rows)
    {
        for (const auto& r : rows) {
            auto& t = totals_[std::size_t(r.dir)][r.flow_id];
            t.samples += r.samples;
            t.cost += r.norm_cost;
        }
    }

    void print(std::FILE* out, std::size_t top) const
    {
        for (direction d : {direction::rx, direction::tx}) {
            const auto& of_direction = totals_[std::size_t(d)];
            std::vector<std::pair<std::uint64_t, totals>> flows(of_direction.begin(), of_direction.end());
            std::sort(flows.begin(), flows.end(), [](const auto& a, const auto& b) {
                return a.second.cost != b.second.cost ? a.second.cost > b.second.cost : a.first < b.first;
            });
            std::fprintf(out, "%s: %zu flows%s\n", to_string(d), flows.size(), flows.empty() ? "" : "; costliest:");
            for (std::size_t i = 0; i < flows.size() && i < top; ++i)
                std::fprintf(out, "  flow %s  samples %llu  cost %.1f\n", flow_label(flows[i].first).c_str(),
                             (unsigned long long)flows[i].second.samples, flows[i].second.cost);
        }
    }

private:
    struct totals {
        std::uint64_t samples = 0;
        double cost = 0;
    };
    // Decimal, as in the flow label of the metrics and the flow_id column.
    // Flow id 0 is "no flow": CPU time spent outside any network flow.
    static std::string flow_label(std::uint64_t flow)
    {
        return flow == 0 ? "none (outside any flow)" : std::to_string(flow);
    }
    // Per direction (rx, tx): flow id -> totals, the whole 64-bit id kept.
    std::array<std::unordered_map<std::uint64_t, totals>, 2> totals_;
};

class agent_pipeline {
public:
    using clock = std::chrono::steady_clock;

    struct parts {
        prometheus::metrics_state& metrics;
        const prometheus::http_exporter* server; // null: no metrics server
        const sample_decoder& decoder;
        clickhouse::writer* writer;         // null: no ClickHouse
        data_object_registry* registry;     // null: no data objects
        bool live;                          // reading the pinned collector, whose layout comes from BTF
    };

    agent_pipeline(parts p, rollup_config rc) : p_(p), rollup_(rc, rows_sink{this}) {}

    void on_sample(const sample& s)
    {
        p_.metrics.count_sample(s.dir, s.pmu_event);
        std::uint64_t object = 0;
        if (p_.registry && s.data_addr != 0)
            object = p_.registry->resolve(s.pid, s.data_addr);
        if (p_.writer)
            p_.writer->add(s, object);
        rollup_.add(s, s.ip, object);
        if ((++samples_ & 4095) == 0 && clock::now() - last_tick_ >= std::chrono::seconds(1))
            tick();
    }

    void on_layout(const negotiated_layout& layout)
    {
        const std::string_view source = p_.live ? to_string(layout_source::btf) : to_string(layout.source);
        p_.metrics.set_layout(std::string(layout.name()), std::string(source));
        std::fprintf(stderr, "micro_sentinel_agent: sample layout %.*s (negotiated from %.*s)\n",
                     int(layout.name().size()), layout.name().data(), int(source.size()), source.data());
    }

    // The recorder sends counters about once a second, which also paces the
    // agent's periodic work while no samples arrive.
    void on_counters(const collector_counters& c)
    {
        prometheus::set_collector_counters(p_.metrics, c);
        counters_ = c;
        tick();
    }

    void tick()
    {
        last_tick_ = clock::now();
        if (p_.live) {
            timespec now{};
            clock_gettime(CLOCK_MONOTONIC, &now);
            rollup_.advance_time(std::uint64_t(now.tv_sec) * 1'000'000'000ull + std::uint64_t(now.tv_nsec));
        }
        take_new_objects();
        if (p_.registry && last_tick_ - last_sweep_ >= sweep_interval) {
            p_.registry->sweep_exited();
            last_sweep_ = last_tick_;
        }
        if (p_.writer)
            p_.writer->poll();
        publish();
    }

    // End of input: everything accumulated goes out.
    void finish()
    {
        rollup_.flush();
        take_new_objects();
        publish();
    }

    const flow_summary& summary() const noexcept { return summary_; }
    const collector_counters& counters() const noexcept { return counters_; }
    std::uint64_t samples() const noexcept { return samples_; }

private:
    struct rows_sink {
        agent_pipeline* self;
        void operator()(std::span<const flow_rollup_row> rows) { self->on_rows(rows); }
    };

    void on_rows(std::span<const flow_rollup_row> rows)
    {
        p_.metrics.add_flow_rows(rows, clock::now());
        if (p_.writer)
            p_.writer->add(rows);
        summary_.add(rows);
    }

    void take_new_objects()
    {
        if (!p_.registry)
            return;
        for (const auto& row : p_.registry->take_new_objects())
            if (p_.writer)
                p_.writer->add(row);
        p_.metrics.set_data_objects_registered(p_.registry->stats().objects_reported);
    }

    void publish()
    {
        prometheus::set_decode_stats(p_.metrics, p_.decoder.stats());
        if (p_.writer) {
            const auto& s = p_.writer->stats();
            p_.metrics.set_writer_health(
                {s.rows_sent[0] + s.rows_sent[1] + s.rows_sent[2], s.failed_attempts, p_.writer->pending().bytes()});
        }
        if (p_.server)
            p_.metrics.set_http_stats(p_.server->stats());
        p_.metrics.publish(clock::now());
    }

    parts p_;
    flow_rollup<rows_sink> rollup_;
    flow_summary summary_;
    collector_counters counters_;
    std::uint64_t samples_ = 0;
    clock::time_point last_tick_ = clock::now();
    // Lookups that hit never touch /proc, so exited processes are found by a sweep.
    static constexpr auto sweep_interval = std::chrono::seconds(10);
    clock::time_point last_sweep_ = clock::now();
};

} // namespace microsentinel::agent
