#pragma once
// Golden ms_sample records built byte by byte at the offsets the layouts
// document (include/microsentinel/ms_sample.h), independent of the decoder.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace microsentinel::testing {

using record_bytes = std::array<std::byte, 320>;

template <class T>
void put_at(record_bytes& r, std::size_t offset, T value)
{
    std::memcpy(r.data() + offset, &value, sizeof value);
}

struct golden_fields {
    std::uint64_t tsc = 1'000'000'123;
    std::uint32_t cpu = 1;
    std::uint32_t pid = 4242;
    std::uint32_t tid = 4243;
    std::uint32_t pmu_event = 1;
    std::uint64_t ip = 0xffffffff81000010ull;
    std::uint64_t data_addr = 0x7ffd12345678ull;
    std::uint64_t flow_id = 0x1122334455667788ull;
    std::uint32_t gso_segs = 4;
    std::uint16_t ingress_ifindex = 1;
    std::uint16_t numa_node = 0;
    std::uint8_t l4_proto = 6;
    std::uint8_t direction = 1;
    std::uint8_t lbr_nr = 2;
};

inline void put_head(record_bytes& r, const golden_fields& f)
{
    put_at(r, 0, f.tsc);
    put_at(r, 8, f.cpu);
    put_at(r, 12, f.pid);
    put_at(r, 16, f.tid);
    put_at(r, 20, f.pmu_event);
    put_at(r, 24, f.ip);
    put_at(r, 32, f.data_addr);
    put_at(r, 40, f.flow_id);
    put_at(r, 48, f.gso_segs);
    put_at(r, 52, f.ingress_ifindex);
    put_at(r, 54, f.numa_node);
    put_at(r, 56, f.l4_proto);
    for (std::uint64_t i = 0; i < 16; ++i) {
        put_at(r, 64 + 16 * i, 0x1000 + i);
        put_at(r, 64 + 16 * i + 8, 0x2000 + i);
    }
}

// v2: direction at 57, lbr_nr at 58, pad0 at 59.
inline record_bytes v2_record(const golden_fields& f = {})
{
    record_bytes r{};
    put_head(r, f);
    put_at(r, 57, f.direction);
    put_at(r, 58, f.lbr_nr);
    return r;
}

// v1: lbr_nr at 57, pad0[2] at 58.
inline record_bytes v1_record(const golden_fields& f = {})
{
    record_bytes r{};
    put_head(r, f);
    put_at(r, 57, f.lbr_nr);
    return r;
}

} // namespace microsentinel::testing
