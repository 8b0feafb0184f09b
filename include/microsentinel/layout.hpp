#pragma once
// Layout negotiation: which `ms_sample` layout a stream of records uses.
//
// Sources, strongest first: the BTF of the collector (btf_layout.hpp), the
// layout written in a capture header, the record size. A layout is matched by
// member names, offsets and sizes, so a later layout that only appends members
// still decodes with the layout it extends. Anything else is a layout_error at
// negotiation time, never a misdecoded record later.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "ms_sample.h"

namespace microsentinel {

enum class layout_id : std::uint32_t { v1 = 1, v2 = 2 };

enum class layout_source : std::uint8_t { btf, capture_header, record_size };

constexpr std::string_view to_string(layout_source s) noexcept
{
    switch (s) {
    case layout_source::btf: return "btf";
    case layout_source::capture_header: return "capture_header";
    case layout_source::record_size: return "record_size";
    }
    return "unknown";
}

constexpr std::string_view to_string(layout_id id) noexcept { return id == layout_id::v1 ? "v1" : "v2"; }

struct field_desc {
    std::string name;
    std::uint32_t offset;
    std::uint32_t size;

    friend bool operator==(const field_desc&, const field_desc&) = default;
};

struct negotiated_layout {
    layout_id id;
    std::uint32_t record_size; // >= the base layout's size when members were appended
    layout_source source;
    std::vector<field_desc> fields; // as described by the source (the canonical table for id/size sources)

    std::string_view name() const noexcept { return to_string(id); }
};

class layout_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace detail {

struct known_field {
    std::string_view name;
    std::uint32_t offset;
    std::uint32_t size;
};

#define MS_KNOWN_FIELD(type, member)                                                                             \
    known_field { #member, std::uint32_t(offsetof(type, member)), std::uint32_t(sizeof(type::member)) }

#define MS_KNOWN_HEAD_FIELDS(type)                                                                               \
    MS_KNOWN_FIELD(type, tsc), MS_KNOWN_FIELD(type, cpu), MS_KNOWN_FIELD(type, pid), MS_KNOWN_FIELD(type, tid),  \
        MS_KNOWN_FIELD(type, pmu_event), MS_KNOWN_FIELD(type, ip), MS_KNOWN_FIELD(type, data_addr),              \
        MS_KNOWN_FIELD(type, flow_id), MS_KNOWN_FIELD(type, gso_segs), MS_KNOWN_FIELD(type, ingress_ifindex),    \
        MS_KNOWN_FIELD(type, numa_node), MS_KNOWN_FIELD(type, l4_proto)

inline constexpr known_field v1_fields[] = {MS_KNOWN_HEAD_FIELDS(ms_sample_v1), MS_KNOWN_FIELD(ms_sample_v1, lbr_nr),
                                            MS_KNOWN_FIELD(ms_sample_v1, pad0), MS_KNOWN_FIELD(ms_sample_v1, lbr)};
inline constexpr known_field v2_fields[] = {MS_KNOWN_HEAD_FIELDS(ms_sample_v2), MS_KNOWN_FIELD(ms_sample_v2, direction),
                                            MS_KNOWN_FIELD(ms_sample_v2, lbr_nr), MS_KNOWN_FIELD(ms_sample_v2, pad0),
                                            MS_KNOWN_FIELD(ms_sample_v2, lbr)};

// Padding is not matched: it may gain meaning in a later layout.
constexpr bool is_padding(std::string_view name) noexcept { return name.starts_with("pad"); }

#undef MS_KNOWN_HEAD_FIELDS
#undef MS_KNOWN_FIELD

struct known_layout {
    layout_id id;
    std::uint32_t size;
    std::span<const known_field> fields;
};

// Newest first: a description is matched against the newest layout before older ones.
inline constexpr known_layout known_layouts[] = {
    {layout_id::v2, sizeof(ms_sample_v2), v2_fields},
    {layout_id::v1, sizeof(ms_sample_v1), v1_fields},
};

inline const known_layout& known(layout_id id)
{
    for (const auto& k : known_layouts)
        if (k.id == id)
            return k;
    throw layout_error("unknown ms_sample layout id " + std::to_string(std::uint32_t(id)));
}

inline std::string describe_field(std::string_view name, std::uint32_t offset, std::uint32_t size)
{
    return "'" + std::string(name) + "' at offset " + std::to_string(offset) + " (" + std::to_string(size) +
           " bytes)";
}

// Empty when `fields` carry every member of `k` at its offset and size and
// nothing else overlaps it; otherwise the first mismatch, in words.
inline std::string mismatch(const known_layout& k, std::uint32_t struct_size, std::span<const field_desc> fields)
{
    if (struct_size < k.size)
        return "is " + std::to_string(struct_size) + " bytes, " + std::string(to_string(k.id)) + " needs at least " +
               std::to_string(k.size);
    for (const auto& want : k.fields) {
        if (is_padding(want.name))
            continue;
        auto it = std::find_if(fields.begin(), fields.end(), [&](const field_desc& f) { return f.name == want.name; });
        if (it == fields.end())
            return "has no member " + describe_field(want.name, want.offset, want.size);
        if (it->offset != want.offset || it->size != want.size)
            return "has " + describe_field(it->name, it->offset, it->size) + ", " + std::string(to_string(k.id)) +
                   " needs " + describe_field(want.name, want.offset, want.size);
    }
    for (const auto& f : fields) {
        bool known_member =
            std::any_of(k.fields.begin(), k.fields.end(), [&](const known_field& w) { return w.name == f.name; });
        if (!known_member && f.offset < k.size && !is_padding(f.name))
            return "has member " + describe_field(f.name, f.offset, f.size) + " inside the " +
                   std::string(to_string(k.id)) + " layout, which only appended members may extend";
    }
    return {};
}

inline std::vector<field_desc> to_fields(const known_layout& k)
{
    std::vector<field_desc> out;
    out.reserve(k.fields.size());
    for (const auto& f : k.fields)
        out.push_back({std::string(f.name), f.offset, f.size});
    return out;
}

} // namespace detail

// The member table of a known layout, as a capture header or BTF would describe it.
inline std::vector<field_desc> canonical_fields(layout_id id) { return detail::to_fields(detail::known(id)); }

// Matches a struct description (from BTF or a capture's field table) against
// the known layouts. `what` names the source in errors, e.g. "BTF of /x.bpf.o".
inline negotiated_layout negotiate_from_fields(std::string_view what, std::uint32_t struct_size,
                                               std::span<const field_desc> fields, layout_source source)
{
    std::string reasons;
    for (const auto& k : detail::known_layouts) {
        std::string why = detail::mismatch(k, struct_size, fields);
        if (why.empty())
            return {k.id, struct_size, source, {fields.begin(), fields.end()}};
        reasons += "; not " + std::string(to_string(k.id)) + ": it " + why;
    }
    throw layout_error("struct ms_sample from " + std::string(what) + " (" + std::to_string(struct_size) +
                       " bytes) matches no known layout" + reasons +
                       ". Upgrade the consumer to a release that knows this collector");
}

inline negotiated_layout negotiate_from_layout_id(std::uint32_t id, std::uint32_t record_size)
{
    for (const auto& k : detail::known_layouts) {
        if (std::uint32_t(k.id) != id)
            continue;
        if (record_size < k.size)
            throw layout_error("layout id " + std::to_string(id) + " names a " + std::to_string(k.size) +
                               "-byte record, but the record size given is " + std::to_string(record_size));
        return {k.id, record_size, layout_source::capture_header, detail::to_fields(k)};
    }
    throw layout_error("unknown ms_sample layout id " + std::to_string(id) +
                       " (this build knows 1 and 2). Upgrade the consumer, or record with a field table");
}

// Only where the size names exactly one layout: v1 and v2 are both 320 bytes,
// so 320 is ambiguous and says so.
inline negotiated_layout negotiate_from_record_size(std::uint32_t record_size)
{
    const detail::known_layout* match = nullptr;
    std::string same_size;
    for (const auto& k : detail::known_layouts) {
        if (k.size != record_size)
            continue;
        same_size += (same_size.empty() ? "" : " and ") + std::string(to_string(k.id));
        if (match)
            throw layout_error("a record size of " + std::to_string(record_size) + " bytes fits layouts " +
                               same_size + "; the size alone cannot tell them apart. Negotiate from the "
                               "collector's BTF or a capture header instead");
        match = &k;
    }
    if (!match)
        throw layout_error("no known ms_sample layout is " + std::to_string(record_size) + " bytes");
    return {match->id, record_size, layout_source::record_size, detail::to_fields(*match)};
}

} // namespace microsentinel
