#pragma once
// Renders a snapshot as the Prometheus text format 0.0.4 or OpenMetrics 1.0.0.
// One pass over the snapshot: O(series), one growing string.
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "format.hpp"
#include "snapshot.hpp"
#include "text.hpp"

namespace microsentinel::prometheus {

enum class metric_type { counter, gauge, info };

// A metric family. `name` is the OpenMetrics family name: counters get the
// `_total` suffix and info metrics `_info` on their samples (and, in the text
// format, on the family name too, where those types do not exist as such).
struct metric_family {
    std::string_view name;
    metric_type type;
    std::string_view help;
    std::string_view unit = {};
};

namespace detail {

constexpr std::string_view sample_suffix(metric_type t) noexcept
{
    return t == metric_type::counter ? "_total" : t == metric_type::info ? "_info" : "";
}

constexpr std::string_view type_word(metric_type t, exposition_format f) noexcept
{
    if (t == metric_type::counter)
        return "counter";
    if (t == metric_type::info && f == exposition_format::openmetrics)
        return "info";
    return "gauge";
}

inline void append_family_header(std::string& out, const metric_family& m, exposition_format f)
{
    const bool om = f == exposition_format::openmetrics;
    const std::string_view suffix = om ? std::string_view{} : sample_suffix(m.type);
    out += "# HELP ";
    out += m.name;
    out += suffix;
    out += ' ';
    append_help_text(out, m.help, om);
    out += "\n# TYPE ";
    out += m.name;
    out += suffix;
    out += ' ';
    out += type_word(m.type, f);
    out += '\n';
    if (om && !m.unit.empty()) {
        out += "# UNIT ";
        out += m.name;
        out += ' ';
        out += m.unit;
        out += '\n';
    }
}

using label = std::pair<std::string_view, std::string_view>;

inline void append_sample_name(std::string& out, const metric_family& m, std::initializer_list<label> labels)
{
    out += m.name;
    out += sample_suffix(m.type);
    if (labels.size() == 0)
        return;
    char sep = '{';
    for (const auto& [key, value] : labels) {
        out += sep;
        out += key;
        out += "=\"";
        append_label_value(out, value);
        out += '"';
        sep = ',';
    }
    out += '}';
}

inline void append_sample(std::string& out, const metric_family& m, std::initializer_list<label> labels,
                          std::uint64_t value)
{
    append_sample_name(out, m, labels);
    out += ' ';
    append_uint(out, value);
    out += '\n';
}

inline void append_sample(std::string& out, const metric_family& m, std::initializer_list<label> labels,
                          double value)
{
    append_sample_name(out, m, labels);
    out += ' ';
    append_double(out, value);
    out += '\n';
}

} // namespace detail

namespace families {
inline constexpr metric_family flow_cost{
    "micro_sentinel_flow_cost", metric_type::gauge,
    "Normalized cost of a flow in the latest rollup window (sum of sample weight / max(gso_segs, 1) * sampling "
    "scale). Per direction and event the top K flows by cost; flow=other carries the rest, so a group's "
    "series sum to its total."};
inline constexpr metric_family window_start{
    "micro_sentinel_rollup_window_start_seconds", metric_type::gauge,
    "Start of the rollup window micro_sentinel_flow_cost shows, in seconds (Unix time when the collector "
    "reported its boot-to-wall offset).",
    "seconds"};
inline constexpr metric_family samples{"micro_sentinel_samples", metric_type::counter,
                                       "Samples decoded, by direction and event."};
inline constexpr metric_family samples_dropped{
    "micro_sentinel_samples_dropped", metric_type::counter,
    "Samples lost before the rollup: ring_full and throttled in the collector, the other reasons are records "
    "the decoder skipped."};
inline constexpr metric_family sample_layout{
    "micro_sentinel_sample_layout", metric_type::info,
    "The ms_sample layout in use and how it was negotiated (btf, capture_header or record_size)."};
inline constexpr metric_family writer_rows_written{"micro_sentinel_writer_rows_written", metric_type::counter,
                                                   "Rows the writer stored in ClickHouse."};
inline constexpr metric_family writer_batches_failed{
    "micro_sentinel_writer_batches_failed", metric_type::counter,
    "Writer batches ClickHouse rejected or did not answer; they are kept in the spool and retried."};
inline constexpr metric_family writer_spool_bytes{"micro_sentinel_writer_spool_bytes", metric_type::gauge,
                                                  "Bytes of batches waiting in the writer's spool.", "bytes"};
inline constexpr metric_family data_objects_registered{"micro_sentinel_data_objects_registered",
                                                       metric_type::counter,
                                                       "Data objects registered (rows of ms_data_objects)."};
inline constexpr metric_family flows_tracked{
    "micro_sentinel_exporter_flows_tracked", metric_type::gauge,
    "Flows the exporter tracks for micro_sentinel_flow_cost (exported or summed into flow=other)."};
inline constexpr metric_family flows_evicted{"micro_sentinel_exporter_flows_evicted", metric_type::counter,
                                             "Flows removed after not appearing for the staleness interval."};
inline constexpr metric_family rows_untracked{
    "micro_sentinel_exporter_rows_untracked", metric_type::counter,
    "Rollup rows of new flows beyond the tracked-flow limit; their cost is in flow=other."};
inline constexpr metric_family rows_late{
    "micro_sentinel_exporter_rows_late", metric_type::counter,
    "Rollup rows of a window older than the latest one; not in micro_sentinel_flow_cost."};
inline constexpr metric_family http_connections{
    "micro_sentinel_exporter_http_connections", metric_type::counter,
    "Connections to the metrics endpoint by outcome: scrape, not_found, method_not_allowed, bad_request, "
    "rejected_busy (connection limit), timed_out, aborted."};
} // namespace families

inline void render(const metrics_snapshot& s, exposition_format f, std::string& out)
{
    using detail::append_family_header;
    using detail::append_sample;
    out.reserve(out.size() + 4096 + s.flow_costs.size() * 96);

    append_family_header(out, families::flow_cost, f);
    char flow_buf[24];
    for (const auto& c : s.flow_costs) {
        std::string_view flow = "other";
        if (!c.is_other) {
            auto r = std::to_chars(flow_buf, flow_buf + sizeof flow_buf, c.flow_id);
            flow = std::string_view(flow_buf, std::size_t(r.ptr - flow_buf));
        }
        append_sample(out, families::flow_cost,
                      {{"flow", flow}, {"direction", to_string(c.dir)}, {"event", event_label(c.event)}}, c.cost);
    }

    if (s.latest_window_start_ns) {
        append_family_header(out, families::window_start, f);
        append_sample(out, families::window_start, {}, double(*s.latest_window_start_ns) / 1e9);
    }

    append_family_header(out, families::samples, f);
    for (std::size_t d = 0; d < direction_count; ++d)
        for (std::uint32_t e = 0; e < event_slots; ++e)
            if (e != 0 || s.samples[d][e] != 0)
                append_sample(out, families::samples,
                              {{"direction", to_string(direction(d))}, {"event", event_label(e)}}, s.samples[d][e]);

    append_family_header(out, families::samples_dropped, f);
    for (const auto& d : s.dropped)
        append_sample(out, families::samples_dropped, {{"reason", d.reason}}, d.count);

    if (s.layout) {
        append_family_header(out, families::sample_layout, f);
        append_sample(out, families::sample_layout, {{"layout", s.layout->layout}, {"source", s.layout->source}},
                      std::uint64_t{1});
    }

    if (s.writer) {
        append_family_header(out, families::writer_rows_written, f);
        append_sample(out, families::writer_rows_written, {}, s.writer->rows_written);
        append_family_header(out, families::writer_batches_failed, f);
        append_sample(out, families::writer_batches_failed, {}, s.writer->batches_failed);
        append_family_header(out, families::writer_spool_bytes, f);
        append_sample(out, families::writer_spool_bytes, {}, s.writer->spool_bytes);
    }

    if (s.data_objects_registered) {
        append_family_header(out, families::data_objects_registered, f);
        append_sample(out, families::data_objects_registered, {}, *s.data_objects_registered);
    }

    append_family_header(out, families::flows_tracked, f);
    append_sample(out, families::flows_tracked, {}, s.exporter.flows_tracked);
    append_family_header(out, families::flows_evicted, f);
    append_sample(out, families::flows_evicted, {}, s.exporter.flows_evicted);
    append_family_header(out, families::rows_untracked, f);
    append_sample(out, families::rows_untracked, {}, s.exporter.rows_untracked);
    append_family_header(out, families::rows_late, f);
    append_sample(out, families::rows_late, {}, s.exporter.rows_late);

    if (s.http) {
        const http_stats& h = *s.http;
        append_family_header(out, families::http_connections, f);
        const std::pair<std::string_view, std::uint64_t> outcomes[] = {
            {"scrape", h.scrapes},
            {"not_found", h.not_found},
            {"method_not_allowed", h.method_not_allowed},
            {"bad_request", h.bad_requests},
            {"rejected_busy", h.rejected_busy},
            {"timed_out", h.timed_out},
            {"aborted", h.aborted},
        };
        for (const auto& [outcome, n] : outcomes)
            append_sample(out, families::http_connections, {{"outcome", outcome}}, n);
    }

    if (f == exposition_format::openmetrics)
        out += "# EOF\n";
}

inline std::string render(const metrics_snapshot& s, exposition_format f)
{
    std::string out;
    render(s, f, out);
    return out;
}

} // namespace microsentinel::prometheus
