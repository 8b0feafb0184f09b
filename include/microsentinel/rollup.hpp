#pragma once
// Flow rollup: aggregates decoded samples into fixed time windows keyed by
// (window_start, flow_id, direction, pmu_event, numa_node, function,
// data_object_id), summing the sample count and the normalized cost
// weight / max(gso_segs, 1) * sampling_scale, and hands rows shaped like
// ms_flow_rollup to a sink.
//
// Guarantees:
// - Bounded memory: at most max_entries keys, in tables allocated once at
//   construction. A new key arriving when the table is full makes the rollup
//   emit everything it holds (an early flush) and start over; accumulated
//   data is emitted, never dropped. The same key may then appear in several
//   rows of one window; their sums add up (ms_flow_rollup sums on merge).
// - Windows close on a watermark: the highest sample time seen minus
//   allowed_lateness_ns. A window [start, start + window_ns) closes, and its
//   rows are emitted, once the watermark reaches its end. A sample whose
//   window already closed is counted in late_samples and emitted with the
//   next emission (the next window close, early flush or flush()).
// - Determinism: the same samples in the same order give the same rows in the
//   same order; every emission is sorted by key.
// - add() does not allocate, lock or make indirect calls; the sink is a
//   template parameter called as sink(std::span<const flow_rollup_row>) with
//   a span that is only valid during the call. If the sink throws, the rows
//   it was given stay in the table, are offered again with the next
//   emission, and the exception propagates (add() and flush() are noexcept
//   exactly when the sink call is).
//
// Use:
//   flow_rollup rollup(rollup_config{}, [&](std::span<const flow_rollup_row> rows) { writer.add(rows); });
//   rollup.add(sample, sample.ip, registry.resolve(sample.pid, sample.data_addr));
//   rollup.advance_time(now_monotonic_ns); // from a timer, so idle windows close
//   rollup.flush();                        // at shutdown
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/flat_table.hpp"
#include "detail/hash.hpp"
#include "rows.hpp"
#include "sample.hpp"

namespace microsentinel {

struct rollup_config {
    std::uint64_t window_ns = 1'000'000'000;
    std::size_t max_entries = 65536;
    std::uint64_t allowed_lateness_ns = 0;
    double sampling_scale = 1.0;
    // Added to sample times (CLOCK_MONOTONIC) so windows are aligned to, and
    // rows carry, wall-clock time; 0 keeps monotonic time.
    std::int64_t boot_to_wall_ns = 0;
};

struct rollup_stats {
    std::uint64_t samples_in = 0;
    std::uint64_t rows_emitted = 0;
    std::uint64_t samples_emitted = 0; // sum of row.samples over emitted rows
    std::uint64_t early_flushes = 0;   // emissions forced by a full table
    std::uint64_t window_closes = 0;   // emissions triggered by the watermark
    std::uint64_t late_samples = 0;    // samples whose window had already closed
};

namespace detail {

struct rollup_key {
    std::uint64_t window_start;
    std::uint64_t flow_id;
    std::uint64_t function;
    std::uint64_t data_object_id;
    std::uint32_t pmu_event;
    std::uint16_t numa_node;
    direction dir;

    bool operator==(const rollup_key&) const = default;
};

struct rollup_key_hash {
    std::uint64_t operator()(const rollup_key& k) const noexcept
    {
        const std::uint64_t small = std::uint64_t{k.pmu_event} | std::uint64_t{k.numa_node} << 32
                                    | std::uint64_t{static_cast<std::uint8_t>(k.dir)} << 48;
        return mum(k.window_start ^ hash_k0, k.flow_id ^ hash_k1)
               ^ mum(k.function ^ hash_k2, k.data_object_id ^ hash_k3) ^ mum(small ^ hash_k1, hash_k2);
    }
};

struct rollup_value {
    std::uint64_t samples;
    double cost;
};

inline bool row_key_less(const flow_rollup_row& a, const flow_rollup_row& b) noexcept
{
    return std::tie(a.window_start_ns, a.flow_id, a.dir, a.pmu_event, a.numa_node, a.function, a.data_object_id)
           < std::tie(b.window_start_ns, b.flow_id, b.dir, b.pmu_event, b.numa_node, b.function, b.data_object_id);
}

} // namespace detail

template <class Sink>
class flow_rollup {
    static constexpr bool nothrow_sink = std::is_nothrow_invocable_v<Sink&, std::span<const flow_rollup_row>>;

public:
    flow_rollup(rollup_config config, Sink sink)
        : config_(validated(config)), sink_(std::move(sink)), table_(config.max_entries),
          rows_(config.max_entries),
          close_trigger_(saturating_add(config.window_ns, config.allowed_lateness_ns))
    {
    }

    // Adds one sample. function and data_object_id are the caller's
    // attribution (e.g. the ip and the registry's object id); weight is the
    // sample's cost before normalization (1 per sample for counting events).
    void add(const sample& s, std::uint64_t function, std::uint64_t data_object_id,
             double weight = 1.0) noexcept(nothrow_sink)
    {
        const std::uint64_t t = to_time(s.tsc);
        // One subtraction decides "same window as the previous sample".
        if (t - current_window_ >= config_.window_ns)
            current_window_ = t - t % config_.window_ns;
        const std::uint64_t window_start = current_window_;
        if (t > max_time_) {
            max_time_ = t;
            if (t >= close_trigger_)
                close_windows();
        }

        const detail::rollup_key key{window_start, s.flow_id, function, data_object_id,
                                     s.pmu_event, s.numa_node, s.dir};
        detail::rollup_value* v = table_.find_or_insert(key);
        if (v == nullptr) {
            emit_all();
            ++stats_.early_flushes;
            v = table_.find_or_insert(key);
        }
        ++v->samples;
        const std::uint32_t segs = s.gso_segs > 1 ? s.gso_segs : 1;
        v->cost += weight / static_cast<double>(segs) * config_.sampling_scale;
        ++stats_.samples_in;
        if (window_start < closed_until_)
            ++stats_.late_samples;
    }

    // Moves the watermark without a sample (now_tsc in the samples' clock), so
    // windows close while no samples arrive.
    void advance_time(std::uint64_t now_tsc) noexcept(nothrow_sink)
    {
        const std::uint64_t t = to_time(now_tsc);
        if (t > max_time_) {
            max_time_ = t;
            if (t >= close_trigger_)
                close_windows();
        }
    }

    // Emits everything held, closed or not (at shutdown, or before a restart).
    void flush() noexcept(nothrow_sink) { emit_all(); }

    const rollup_stats& stats() const noexcept { return stats_; }
    const rollup_config& config() const noexcept { return config_; }
    std::size_t entries() const noexcept { return table_.size(); }
    std::size_t max_entries() const noexcept { return table_.max_entries(); }
    // Bytes held by the tables and the emission buffer; fixed at construction.
    std::size_t memory_bytes() const noexcept
    {
        return table_.memory_bytes() + rows_.capacity() * sizeof(flow_rollup_row);
    }
    // Start of the oldest window still open (in the rows' clock).
    std::uint64_t closed_until() const noexcept { return closed_until_; }
    Sink& sink() noexcept { return sink_; }

private:
    using table_type = detail::flat_table<detail::rollup_key, detail::rollup_value, detail::rollup_key_hash>;

    static rollup_config validated(const rollup_config& c)
    {
        if (c.window_ns == 0)
            throw std::invalid_argument("rollup_config.window_ns is 0; set a window length in ns (e.g. 1000000000)");
        if (!std::isfinite(c.sampling_scale) || c.sampling_scale < 0)
            throw std::invalid_argument("rollup_config.sampling_scale must be a finite number >= 0, got "
                                        + std::to_string(c.sampling_scale));
        return c;
    }

    static std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept
    {
        return a > std::numeric_limits<std::uint64_t>::max() - b ? std::numeric_limits<std::uint64_t>::max() : a + b;
    }

    std::uint64_t to_time(std::uint64_t tsc) const noexcept
    {
        return tsc + static_cast<std::uint64_t>(config_.boot_to_wall_ns);
    }

    static flow_rollup_row to_row(const table_type::entry& e) noexcept
    {
        return flow_rollup_row{e.key.window_start, e.key.flow_id,   e.key.dir,
                               e.key.pmu_event,    e.key.numa_node, e.key.function,
                               e.key.data_object_id, e.value.samples, e.value.cost};
    }

    void close_windows() noexcept(nothrow_sink)
    {
        const std::uint64_t watermark =
            max_time_ > config_.allowed_lateness_ns ? max_time_ - config_.allowed_lateness_ns : 0;
        const std::uint64_t boundary = watermark - watermark % config_.window_ns;
        if (boundary > closed_until_)
            closed_until_ = boundary;
        close_trigger_ = saturating_add(saturating_add(closed_until_, config_.window_ns), config_.allowed_lateness_ns);
        if (table_.size() == 0)
            return;
        const auto closed = [this](const table_type::entry& e) { return e.key.window_start < closed_until_; };
        std::size_t n = 0;
        for (const auto& e : table_.entries())
            if (closed(e))
                rows_[n++] = to_row(e);
        if (n == 0)
            return;
        emit(n);
        ++stats_.window_closes;
        table_.extract_if(closed, [](const table_type::entry&) {});
    }

    void emit_all() noexcept(nothrow_sink)
    {
        std::size_t n = 0;
        for (const auto& e : table_.entries())
            rows_[n++] = to_row(e);
        if (n == 0)
            return;
        emit(n);
        table_.clear();
    }

    void emit(std::size_t n) noexcept(nothrow_sink)
    {
        std::sort(rows_.begin(), rows_.begin() + static_cast<std::ptrdiff_t>(n), detail::row_key_less);
        sink_(std::span<const flow_rollup_row>(rows_.data(), n));
        stats_.rows_emitted += n;
        for (std::size_t i = 0; i < n; ++i)
            stats_.samples_emitted += rows_[i].samples;
    }

    rollup_config config_;
    Sink sink_;
    table_type table_;
    std::vector<flow_rollup_row> rows_; // emission buffer, max_entries rows
    rollup_stats stats_;
    std::uint64_t max_time_ = 0;
    std::uint64_t closed_until_ = 0;  // windows starting before this are closed
    std::uint64_t close_trigger_;     // max_time_ at which the next window closes
    std::uint64_t current_window_ = 0;
};

} // namespace microsentinel
