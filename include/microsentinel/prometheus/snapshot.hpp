#pragma once
// What one scrape shows: an immutable copy of the metrics, published by the
// pipeline and rendered by the HTTP side without touching pipeline state.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../ms_sample.h"
#include "../sample.hpp"

namespace microsentinel::prometheus {

// Slot 0 collects event codes this release does not know, so that two unknown
// codes cannot produce two series with the same labels.
inline constexpr std::size_t event_slots = 6;

constexpr std::uint32_t event_slot(std::uint32_t pmu_event) noexcept
{
    return pmu_event >= MS_EVT_CPU_CLOCK && pmu_event <= MS_EVT_BRANCH_MISSES ? pmu_event : 0;
}

// The `event` label value of an event slot (enum ms_pmu_event).
constexpr std::string_view event_label(std::uint32_t slot) noexcept
{
    switch (slot) {
    case MS_EVT_CPU_CLOCK: return "cpu_clock";
    case MS_EVT_PAGE_FAULTS: return "page_faults";
    case MS_EVT_CYCLES: return "cycles";
    case MS_EVT_LLC_MISSES: return "llc_misses";
    case MS_EVT_BRANCH_MISSES: return "branch_misses";
    default: return "unknown";
    }
}

inline constexpr std::size_t direction_count = 2;

struct flow_cost_series {
    std::uint64_t flow_id;
    bool is_other; // flow="other": every flow of the group outside the top K
    direction dir;
    std::uint32_t event; // event slot
    double cost;

    friend bool operator==(const flow_cost_series&, const flow_cost_series&) = default;
};

struct drop_count {
    std::string reason;
    std::uint64_t count;
};

struct layout_info {
    std::string layout; // "v1", "v2"
    std::string source; // "btf", "capture_header", "record_size"
};

struct writer_health {
    std::uint64_t rows_written = 0;
    std::uint64_t batches_failed = 0;
    std::uint64_t spool_bytes = 0;
};

// The exporter's own bookkeeping, so bounded cardinality never hides data silently.
struct exporter_health {
    std::uint64_t flows_tracked = 0;
    std::uint64_t flows_evicted = 0;   // removed after the staleness interval
    std::uint64_t rows_untracked = 0;  // rows of new flows beyond max_tracked_flows, summed into "other"
    std::uint64_t rows_late = 0;       // rows of a window older than the latest one, not shown
};

// Connections by outcome: answered (by status), rejected, timed out or aborted.
struct http_stats {
    std::uint64_t scrapes = 0;             // 200
    std::uint64_t not_found = 0;           // 404
    std::uint64_t method_not_allowed = 0;  // 405
    std::uint64_t bad_requests = 0;        // 400, 431
    std::uint64_t rejected_busy = 0;       // 503: max_connections reached
    std::uint64_t timed_out = 0;           // request or response did not finish within io_timeout
    std::uint64_t aborted = 0;             // the client closed or reset the connection first
};

struct metrics_snapshot {
    // Grouped by (direction, event) in that order; in a group the top K flows
    // by cost (descending, ties by flow id) and then the "other" series.
    std::vector<flow_cost_series> flow_costs;
    std::optional<std::uint64_t> latest_window_start_ns;
    std::array<std::array<std::uint64_t, event_slots>, direction_count> samples{};
    std::vector<drop_count> dropped; // in the order the reasons were first reported
    std::optional<layout_info> layout;
    std::optional<writer_health> writer;               // absent in processes without a writer
    std::optional<std::uint64_t> data_objects_registered; // absent without a registry
    exporter_health exporter;
    std::optional<http_stats> http; // absent where no HTTP server reports
};

} // namespace microsentinel::prometheus
