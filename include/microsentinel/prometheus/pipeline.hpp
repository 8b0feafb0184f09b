#pragma once
// Feeding metrics_state from the pipeline's own types: decoder skips, the
// collector's counters and the negotiated layout.
#include <cstddef>
#include <string>

#include "../capture.hpp"
#include "../decode.hpp"
#include "../layout.hpp"
#include "metrics_state.hpp"

namespace microsentinel::prometheus {

// One samples_dropped_total{reason} series per decoder skip reason.
inline void set_decode_stats(metrics_state& m, const decode_stats& stats)
{
    for (std::size_t i = 0; i < skip_reason_count; ++i)
        m.set_dropped(to_string(skip_reason(i)), stats.skipped[i]);
}

inline void set_collector_counters(metrics_state& m, const collector_counters& c)
{
    m.set_dropped("ring_full", c.ringbuf_full);
    m.set_dropped("throttled", c.throttled);
}

inline void set_layout(metrics_state& m, const negotiated_layout& layout)
{
    m.set_layout(std::string(layout.name()), std::string(to_string(layout.source)));
}

} // namespace microsentinel::prometheus
