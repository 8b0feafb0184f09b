#pragma once
// Decoding `ms_sample` records: a zero-copy view per layout, and a decoder that
// checks each record against the negotiated layout before anything is read.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "layout.hpp"
#include "ms_sample.h"
#include "sample.hpp"

namespace microsentinel {

// Why a record was skipped. Every skip is counted; none is silent.
enum class skip_reason : std::uint8_t {
    truncated,     // shorter than the negotiated record size
    oversized,     // longer than the negotiated record size
    bad_lbr_nr,    // lbr_nr > 16
    bad_direction, // v2 direction byte neither rx (0) nor tx (1): likely not a v2 record
    bad_padding,   // v1 padding not zero: likely a v2 record read as v1
};

inline constexpr std::size_t skip_reason_count = 5;

constexpr std::string_view to_string(skip_reason r) noexcept
{
    switch (r) {
    case skip_reason::truncated: return "truncated";
    case skip_reason::oversized: return "oversized";
    case skip_reason::bad_lbr_nr: return "bad_lbr_nr";
    case skip_reason::bad_direction: return "bad_direction";
    case skip_reason::bad_padding: return "bad_padding";
    }
    return "unknown";
}

struct decode_stats {
    std::uint64_t decoded = 0;
    std::array<std::uint64_t, skip_reason_count> skipped{};

    std::uint64_t skipped_total() const noexcept
    {
        std::uint64_t n = 0;
        for (auto v : skipped)
            n += v;
        return n;
    }
    std::uint64_t skipped_for(skip_reason r) const noexcept { return skipped[std::size_t(r)]; }
};

struct layout_v1 {
    using record = ms_sample_v1;
    static constexpr layout_id id = layout_id::v1;
};

struct layout_v2 {
    using record = ms_sample_v2;
    static constexpr layout_id id = layout_id::v2;
};

// A view over one record of layout L. The caller guarantees `sizeof(L::record)`
// readable bytes; fields are read with memcpy, so any alignment is fine.
template <class L>
class record_view {
public:
    using record = typename L::record;

    explicit record_view(const std::byte* data) noexcept : p_(data) {}

#define MS_VIEW_FIELD(member)                                                                                    \
    auto member() const noexcept { return load<decltype(record::member)>(offsetof(record, member)); }
    MS_VIEW_FIELD(tsc)
    MS_VIEW_FIELD(cpu)
    MS_VIEW_FIELD(pid)
    MS_VIEW_FIELD(tid)
    MS_VIEW_FIELD(pmu_event)
    MS_VIEW_FIELD(ip)
    MS_VIEW_FIELD(data_addr)
    MS_VIEW_FIELD(flow_id)
    MS_VIEW_FIELD(gso_segs)
    MS_VIEW_FIELD(ingress_ifindex)
    MS_VIEW_FIELD(numa_node)
    MS_VIEW_FIELD(l4_proto)
    MS_VIEW_FIELD(lbr_nr)
#undef MS_VIEW_FIELD

    // v1 has no direction byte: every v1 sample was taken on the ingress path.
    std::uint8_t direction_byte() const noexcept
    {
        if constexpr (L::id == layout_id::v2)
            return load<std::uint8_t>(offsetof(record, direction));
        else
            return MS_DIR_RX;
    }

    bool padding_is_zero() const noexcept
    {
        std::uint8_t pad[sizeof(record::pad0)];
        std::memcpy(pad, p_ + offsetof(record, pad0), sizeof pad);
        for (auto b : pad)
            if (b != 0)
                return false;
        return true;
    }

    const std::byte* lbr_bytes() const noexcept { return p_ + offsetof(record, lbr); }

    // Checks what the layout alone cannot guarantee; fills `out` when it holds.
    bool decode(sample& out, skip_reason& why) const noexcept
    {
        out.lbr_nr = lbr_nr();
        if (out.lbr_nr > MS_LBR_MAX) {
            why = skip_reason::bad_lbr_nr;
            return false;
        }
        std::uint8_t dir = direction_byte();
        if (dir > MS_DIR_TX) {
            why = skip_reason::bad_direction;
            return false;
        }
        if constexpr (L::id == layout_id::v1) {
            if (!padding_is_zero()) {
                why = skip_reason::bad_padding;
                return false;
            }
        }
        out.tsc = tsc();
        out.cpu = cpu();
        out.pid = pid();
        out.tid = tid();
        out.pmu_event = pmu_event();
        out.ip = ip();
        out.data_addr = data_addr();
        out.flow_id = flow_id();
        out.gso_segs = gso_segs();
        out.ingress_ifindex = ingress_ifindex();
        out.numa_node = numa_node();
        out.l4_proto = l4_proto();
        out.dir = direction(dir);
        out.lbr = lbr_bytes();
        return true;
    }

private:
    template <class T>
    T load(std::size_t offset) const noexcept
    {
        T v;
        std::memcpy(&v, p_ + offset, sizeof v);
        return v;
    }

    const std::byte* p_;
};

class sample_decoder {
public:
    explicit sample_decoder(negotiated_layout layout) : layout_(std::move(layout)) {}

    const negotiated_layout& layout() const noexcept { return layout_; }
    const decode_stats& stats() const noexcept { return stats_; }

    // A new layout for the records that follow (collector upgraded or rolled back).
    void renegotiate(negotiated_layout layout) { layout_ = std::move(layout); }

    // One record as the ring buffer delivered it. False: skipped and counted.
    bool decode(std::span<const std::byte> record, sample& out) noexcept
    {
        if (record.size() != layout_.record_size) {
            skip(record.size() < layout_.record_size ? skip_reason::truncated : skip_reason::oversized);
            return false;
        }
        return layout_.id == layout_id::v2 ? decode_as<layout_v2>(record.data(), out)
                                           : decode_as<layout_v1>(record.data(), out);
    }

    // Back-to-back records of the negotiated size: the layout is dispatched once
    // per buffer, not per record. A partial record at the end counts as truncated.
    template <class OnSample>
    void decode_packed(std::span<const std::byte> buffer, OnSample&& on_sample)
    {
        if (layout_.id == layout_id::v2)
            decode_packed_as<layout_v2>(buffer, on_sample);
        else
            decode_packed_as<layout_v1>(buffer, on_sample);
    }

private:
    template <class L>
    bool decode_as(const std::byte* data, sample& out) noexcept
    {
        skip_reason why{};
        if (!record_view<L>(data).decode(out, why)) {
            skip(why);
            return false;
        }
        ++stats_.decoded;
        return true;
    }

    template <class L, class OnSample>
    void decode_packed_as(std::span<const std::byte> buffer, OnSample& on_sample)
    {
        const std::size_t size = layout_.record_size;
        std::size_t at = 0;
        sample s;
        for (; at + size <= buffer.size(); at += size)
            if (decode_as<L>(buffer.data() + at, s))
                on_sample(s);
        if (at != buffer.size())
            skip(skip_reason::truncated);
    }

    void skip(skip_reason r) noexcept { ++stats_.skipped[std::size_t(r)]; }

    negotiated_layout layout_;
    decode_stats stats_;
};

} // namespace microsentinel
