#pragma once
// The decoded sample: one uniform shape whatever layout the record had.
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace microsentinel {

enum class direction : std::uint8_t { rx = 0, tx = 1 };

constexpr const char* to_string(direction d) noexcept { return d == direction::tx ? "tx" : "rx"; }

struct lbr_entry {
    std::uint64_t from;
    std::uint64_t to;
};

inline constexpr std::size_t max_lbr_entries = 16;

struct sample {
    std::uint64_t tsc;       // CLOCK_MONOTONIC ns at the sample
    std::uint32_t cpu;
    std::uint32_t pid;
    std::uint32_t tid;
    std::uint32_t pmu_event; // enum ms_pmu_event
    std::uint64_t ip;
    std::uint64_t data_addr;
    std::uint64_t flow_id;
    std::uint32_t gso_segs;
    std::uint16_t ingress_ifindex;
    std::uint16_t numa_node;
    std::uint8_t l4_proto;
    direction dir;           // v1 records decode as rx
    std::uint8_t lbr_nr;     // <= max_lbr_entries, checked by the decoder
    const std::byte* lbr;    // lbr_nr entries of 16 bytes inside the record; valid while the record is

    lbr_entry lbr_at(std::size_t i) const noexcept
    {
        lbr_entry e;
        std::memcpy(&e, lbr + i * sizeof(lbr_entry), sizeof e);
        return e;
    }
};

} // namespace microsentinel
