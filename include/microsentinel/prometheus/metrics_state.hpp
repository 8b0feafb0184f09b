#pragma once
// The metrics a pipeline keeps for Prometheus, and the one point where it hands
// them to scrapes. One thread (the pipeline) updates; publish() builds an
// immutable snapshot (stale flows evicted, top K per group selected) and swaps
// a pointer under a mutex held for that swap only. Scrapes take the pointer and
// render their own copy, so neither side waits on the other's work.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../rows.hpp"
#include "snapshot.hpp"

namespace microsentinel::prometheus {

struct metrics_config {
    std::size_t top_k = 50;                                  // flows per (direction, event); the rest is "other"
    std::chrono::steady_clock::duration staleness = std::chrono::minutes(5); // drop flows unseen this long
    std::size_t max_tracked_flows = 100'000;                 // bounds memory; later flows go into "other"
};

class metrics_state {
public:
    using clock = std::chrono::steady_clock;

    explicit metrics_state(metrics_config config = {}) : config_(validated(config))
    {
        published_ = std::make_shared<const metrics_snapshot>();
        set_dropped("ring_full", 0);
        set_dropped("throttled", 0);
    }

    const metrics_config& config() const noexcept { return config_; }

    // --- Pipeline thread only. ---

    // Per decoded sample: two array indexes and an increment.
    void count_sample(direction d, std::uint32_t pmu_event) noexcept
    {
        ++samples_[std::size_t(d) & 1][event_slot(pmu_event)];
    }

    // Rows from the flow rollup. A flow's value is its cost in the latest
    // window any row has named; rows of one window add up (a rollup may emit a
    // window in parts), rows of an older window are counted as late.
    void add_flow_rows(std::span<const flow_rollup_row> rows, clock::time_point now)
    {
        for (const auto& r : rows) {
            if (!latest_window_ || r.window_start_ns > *latest_window_)
                latest_window_ = r.window_start_ns;
            else if (r.window_start_ns < *latest_window_) {
                ++health_.rows_late;
                continue;
            }
            const std::uint32_t slot = event_slot(r.pmu_event);
            const flow_key key{r.flow_id, r.dir, slot};
            auto it = flows_.find(key);
            if (it == flows_.end()) {
                if (flows_.size() >= config_.max_tracked_flows) {
                    ++health_.rows_untracked;
                    auto& u = untracked_[std::size_t(r.dir) & 1][slot];
                    if (u.window != r.window_start_ns)
                        u = {r.window_start_ns, 0.0};
                    u.cost += r.norm_cost;
                    continue;
                }
                it = flows_.emplace(key, flow_entry{r.window_start_ns, 0.0, now}).first;
            }
            flow_entry& e = it->second;
            if (e.window != r.window_start_ns)
                e = {r.window_start_ns, 0.0, now};
            e.cost += r.norm_cost;
            e.last_seen = now;
        }
    }

    // Cumulative count of samples lost for `reason`, as its source reports it.
    void set_dropped(std::string_view reason, std::uint64_t cumulative)
    {
        for (auto& d : dropped_)
            if (d.reason == reason) {
                d.count = cumulative;
                return;
            }
        dropped_.push_back({std::string(reason), cumulative});
    }

    void set_layout(std::string layout, std::string source)
    {
        layout_ = layout_info{std::move(layout), std::move(source)};
    }
    void set_writer_health(const writer_health& w) { writer_ = w; }
    void set_data_objects_registered(std::uint64_t n) { data_objects_registered_ = n; }
    void set_http_stats(const http_stats& s) { http_ = s; }

    // Evicts flows unseen for the staleness interval, selects the top K per
    // (direction, event) and makes the result what scrapes see.
    void publish(clock::time_point now)
    {
        auto snap = std::make_shared<metrics_snapshot>();
        evict_stale(now);
        collect_flow_costs(snap->flow_costs);
        snap->latest_window_start_ns = latest_window_;
        snap->samples = samples_;
        snap->dropped = dropped_;
        snap->layout = layout_;
        snap->writer = writer_;
        snap->data_objects_registered = data_objects_registered_;
        snap->exporter = health_;
        snap->exporter.flows_tracked = flows_.size();
        snap->http = http_;
        std::shared_ptr<const metrics_snapshot> done = std::move(snap);
        std::lock_guard lock(published_mutex_);
        published_.swap(done);
    }

    // --- Any thread. ---

    // The latest published snapshot; never null.
    std::shared_ptr<const metrics_snapshot> current() const
    {
        std::lock_guard lock(published_mutex_);
        return published_;
    }

private:
    struct flow_key {
        std::uint64_t flow_id;
        direction dir;
        std::uint32_t event;
        bool operator==(const flow_key&) const = default;
    };
    struct flow_key_hash {
        std::size_t operator()(const flow_key& k) const noexcept
        {
            std::uint64_t x = k.flow_id ^ (std::uint64_t(k.event) << 1 | std::uint64_t(k.dir)) * 0x9e3779b97f4a7c15ull;
            x ^= x >> 33;
            x *= 0xff51afd7ed558ccdull;
            x ^= x >> 33;
            return std::size_t(x);
        }
    };
    struct flow_entry {
        std::uint64_t window;
        double cost;
        clock::time_point last_seen;
    };
    struct untracked_cost {
        std::uint64_t window = 0;
        double cost = 0;
    };
    struct ranked {
        std::uint64_t flow_id;
        double cost;
    };

    static metrics_config validated(const metrics_config& c)
    {
        if (c.top_k == 0)
            throw std::invalid_argument("metrics_config.top_k is 0; export at least one flow per direction and event");
        if (c.staleness <= clock::duration::zero())
            throw std::invalid_argument("metrics_config.staleness must be positive");
        return c;
    }

    void evict_stale(clock::time_point now)
    {
        for (auto it = flows_.begin(); it != flows_.end();) {
            if (now - it->second.last_seen > config_.staleness) {
                it = flows_.erase(it);
                ++health_.flows_evicted;
            } else {
                ++it;
            }
        }
    }

    // O(flows): one pass to group, nth_element per group, a sort of K per group.
    void collect_flow_costs(std::vector<flow_cost_series>& out)
    {
        for (auto& per_dir : groups_)
            for (auto& g : per_dir)
                g.clear();
        for (const auto& [key, e] : flows_)
            groups_[std::size_t(key.dir) & 1][key.event].push_back(
                {key.flow_id, latest_window_ && e.window == *latest_window_ ? e.cost : 0.0});

        const auto by_rank = [](const ranked& a, const ranked& b) {
            return a.cost != b.cost ? a.cost > b.cost : a.flow_id < b.flow_id;
        };
        for (std::size_t d = 0; d < direction_count; ++d) {
            for (std::uint32_t ev = 0; ev < event_slots; ++ev) {
                auto& g = groups_[d][ev];
                const auto& u = untracked_[d][ev];
                const double untracked = latest_window_ && u.window == *latest_window_ ? u.cost : 0.0;
                if (g.empty() && untracked == 0.0)
                    continue;
                double other = untracked;
                auto top_end = g.end();
                if (g.size() > config_.top_k) {
                    top_end = g.begin() + std::ptrdiff_t(config_.top_k);
                    std::nth_element(g.begin(), top_end, g.end(), by_rank);
                    for (auto it = top_end; it != g.end(); ++it)
                        other += it->cost;
                }
                std::sort(g.begin(), top_end, by_rank);
                for (auto it = g.begin(); it != top_end; ++it)
                    out.push_back({it->flow_id, false, direction(d), ev, it->cost});
                out.push_back({0, true, direction(d), ev, other});
            }
        }
    }

    metrics_config config_;
    std::array<std::array<std::uint64_t, event_slots>, direction_count> samples_{};
    std::unordered_map<flow_key, flow_entry, flow_key_hash> flows_;
    std::array<std::array<untracked_cost, event_slots>, direction_count> untracked_{};
    std::array<std::array<std::vector<ranked>, event_slots>, direction_count> groups_; // reused scratch
    std::optional<std::uint64_t> latest_window_;
    std::vector<drop_count> dropped_;
    std::optional<layout_info> layout_;
    std::optional<writer_health> writer_;
    std::optional<std::uint64_t> data_objects_registered_;
    exporter_health health_;
    std::optional<http_stats> http_;

    mutable std::mutex published_mutex_; // guards the pointer swap and copy only
    std::shared_ptr<const metrics_snapshot> published_;
};

} // namespace microsentinel::prometheus
