#pragma once
// The three tables the writer fills (migrations/): the fields it knows for
// each, the column names they go into, and how a row becomes RowBinary under
// a column plan.
#include <cstdint>
#include <span>
#include <string_view>

#include "../rows.hpp"
#include "../sample.hpp"
#include "rowbinary.hpp"
#include "schema.hpp"

namespace microsentinel::clickhouse {

inline constexpr std::string_view direction_migration = "migrations/202501_direction_and_data_objects.sql";

namespace detail {
inline constexpr std::string_view ts_aliases[] = {"timestamp", "ts_ns", "time"};
inline constexpr std::string_view window_aliases[] = {"window", "ts", "timestamp"};
} // namespace detail

// ms_raw_samples ------------------------------------------------------------

enum class raw_field : std::uint8_t {
    ts, host, cpu, pid, tid, pmu_event, ip, data_addr, flow_id, gso_segs,
    ingress_ifindex, numa_node, l4_proto, lbr_nr, data_object_id, direction,
};

inline constexpr field_spec raw_sample_fields[] = {
    {"ts", detail::ts_aliases}, {"host", {}},     {"cpu", {}},       {"pid", {}},
    {"tid", {}},                {"pmu_event", {}}, {"ip", {}},        {"data_addr", {}},
    {"flow_id", {}},            {"gso_segs", {}},  {"ingress_ifindex", {}}, {"numa_node", {}},
    {"l4_proto", {}},           {"lbr_nr", {}},    {"data_object_id", {}},  {"direction", {}},
};

// Types of the current migrations: used only while the server cannot be asked.
inline constexpr column_type raw_sample_native_types[] = {
    {type_kind::datetime64, false, 9}, {type_kind::string}, {type_kind::uint32}, {type_kind::uint32},
    {type_kind::uint32}, {type_kind::uint32}, {type_kind::uint64}, {type_kind::uint64},
    {type_kind::uint64}, {type_kind::uint32}, {type_kind::uint16}, {type_kind::uint16},
    {type_kind::uint8}, {type_kind::uint8}, {type_kind::uint64}, {type_kind::uint8},
};

inline constexpr table_spec raw_samples_table{"ms_raw_samples", raw_sample_fields, direction_migration};

// What a raw sample row needs besides the sample.
struct raw_sample_context {
    std::string_view host;
    std::int64_t boot_to_wall_ns = 0;
};

// Appends one row. No allocation once the buffer has grown.
inline void encode_raw_sample(rowbinary_buffer& out, const column_plan& plan, const sample& s, std::uint64_t data_object_id,
                              const raw_sample_context& ctx)
{
    for (const mapped_column& col : plan.columns) {
        cell v;
        switch (raw_field(col.field)) {
        case raw_field::ts: v = cell::of_time_ns(std::uint64_t(std::int64_t(s.tsc) + ctx.boot_to_wall_ns)); break;
        case raw_field::host: v = cell::of_text(ctx.host); break;
        case raw_field::cpu: v = cell::of_unsigned(s.cpu); break;
        case raw_field::pid: v = cell::of_unsigned(s.pid); break;
        case raw_field::tid: v = cell::of_unsigned(s.tid); break;
        case raw_field::pmu_event: v = cell::of_unsigned(s.pmu_event); break;
        case raw_field::ip: v = cell::of_unsigned(s.ip); break;
        case raw_field::data_addr: v = cell::of_unsigned(s.data_addr); break;
        case raw_field::flow_id: v = cell::of_unsigned(s.flow_id); break;
        case raw_field::gso_segs: v = cell::of_unsigned(s.gso_segs); break;
        case raw_field::ingress_ifindex: v = cell::of_unsigned(s.ingress_ifindex); break;
        case raw_field::numa_node: v = cell::of_unsigned(s.numa_node); break;
        case raw_field::l4_proto: v = cell::of_unsigned(s.l4_proto); break;
        case raw_field::lbr_nr: v = cell::of_unsigned(s.lbr_nr); break;
        case raw_field::data_object_id: v = cell::of_unsigned(data_object_id); break;
        case raw_field::direction: v = cell::of_unsigned(std::uint8_t(s.dir)); break;
        }
        out.put_cell(col.type, v);
    }
}

// ms_flow_rollup ------------------------------------------------------------

enum class rollup_field : std::uint8_t {
    window_start, host, flow_id, direction, pmu_event, numa_node, function, data_object_id, samples, norm_cost,
};

inline constexpr field_spec flow_rollup_fields[] = {
    {"window_start", detail::window_aliases}, {"host", {}}, {"flow_id", {}}, {"direction", {}},
    {"pmu_event", {}}, {"numa_node", {}}, {"function", {}}, {"data_object_id", {}}, {"samples", {}},
    {"norm_cost", {}},
};

inline constexpr column_type flow_rollup_native_types[] = {
    {type_kind::datetime64, false, 9}, {type_kind::string}, {type_kind::uint64}, {type_kind::uint8},
    {type_kind::uint32}, {type_kind::uint16}, {type_kind::uint64}, {type_kind::uint64}, {type_kind::uint64},
    {type_kind::float64},
};

inline constexpr table_spec flow_rollup_table{"ms_flow_rollup", flow_rollup_fields, direction_migration};

inline void encode_flow_rollup(rowbinary_buffer& out, const column_plan& plan, const flow_rollup_row& r, std::string_view host)
{
    for (const mapped_column& col : plan.columns) {
        cell v;
        switch (rollup_field(col.field)) {
        case rollup_field::window_start: v = cell::of_time_ns(r.window_start_ns); break;
        case rollup_field::host: v = cell::of_text(host); break;
        case rollup_field::flow_id: v = cell::of_unsigned(r.flow_id); break;
        case rollup_field::direction: v = cell::of_unsigned(std::uint8_t(r.dir)); break;
        case rollup_field::pmu_event: v = cell::of_unsigned(r.pmu_event); break;
        case rollup_field::numa_node: v = cell::of_unsigned(r.numa_node); break;
        case rollup_field::function: v = cell::of_unsigned(r.function); break;
        case rollup_field::data_object_id: v = cell::of_unsigned(r.data_object_id); break;
        case rollup_field::samples: v = cell::of_unsigned(r.samples); break;
        case rollup_field::norm_cost: v = cell::of_real(r.norm_cost); break;
        }
        out.put_cell(col.type, v);
    }
}

// ms_data_objects -----------------------------------------------------------

enum class data_object_field : std::uint8_t { object_id, host, mapping, base, size, permissions };

inline constexpr field_spec data_object_fields[] = {
    {"object_id", {}}, {"host", {}}, {"mapping", {}}, {"base", {}}, {"size", {}}, {"permissions", {}},
};

inline constexpr column_type data_object_native_types[] = {
    {type_kind::uint64}, {type_kind::string}, {type_kind::string},
    {type_kind::uint64}, {type_kind::uint64}, {type_kind::string},
};

inline constexpr table_spec data_objects_table{"ms_data_objects", data_object_fields, direction_migration};

inline void encode_data_object(rowbinary_buffer& out, const column_plan& plan, const data_object_row& r)
{
    for (const mapped_column& col : plan.columns) {
        cell v;
        switch (data_object_field(col.field)) {
        case data_object_field::object_id: v = cell::of_unsigned(r.object_id); break;
        case data_object_field::host: v = cell::of_text(r.host); break;
        case data_object_field::mapping: v = cell::of_text(r.mapping); break;
        case data_object_field::base: v = cell::of_unsigned(r.base); break;
        case data_object_field::size: v = cell::of_unsigned(r.size); break;
        case data_object_field::permissions: v = cell::of_text(r.permissions); break;
        }
        out.put_cell(col.type, v);
    }
}

} // namespace microsentinel::clickhouse
