// Decode throughput against the floor the issue sets: a memcpy of the same bytes.
#include <benchmark/benchmark.h>

#include <microsentinel/decode.hpp>

#include <cstring>
#include <vector>

using namespace microsentinel;

namespace {

constexpr std::size_t record_count = 4096;

// Reads every decoded field, so the compiler cannot skip the loads a consumer makes.
inline std::uint64_t fold(const sample& s)
{
    return s.tsc ^ s.cpu ^ s.pid ^ s.tid ^ s.pmu_event ^ s.ip ^ s.data_addr ^ s.flow_id ^ s.gso_segs ^
           s.ingress_ifindex ^ s.numa_node ^ s.l4_proto ^ std::uint64_t(s.dir) ^ s.lbr_nr;
}

std::vector<std::byte> make_records(layout_id id)
{
    std::vector<std::byte> buf(record_count * 320);
    for (std::size_t i = 0; i < record_count; ++i) {
        std::byte* r = buf.data() + i * 320;
        std::uint64_t flow = i % 512, tsc = i * 1000;
        std::memcpy(r, &tsc, 8);
        std::memcpy(r + 40, &flow, 8);
        if (id == layout_id::v2)
            r[57] = std::byte(i & 1);
    }
    return buf;
}

void memcpy_same_bytes(benchmark::State& state)
{
    auto src = make_records(layout_id::v2);
    std::vector<std::byte> dst(src.size());
    for (auto _ : state) {
        std::memcpy(dst.data(), src.data(), src.size());
        benchmark::DoNotOptimize(dst.data());
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(std::int64_t(state.iterations() * record_count));
    state.SetBytesProcessed(std::int64_t(state.iterations() * src.size()));
}

// One record at a time, as the ring-buffer callback delivers them.
void decode_each_record(benchmark::State& state, layout_id id)
{
    auto buf = make_records(id);
    sample_decoder decoder(negotiate_from_layout_id(std::uint32_t(id), 320));
    sample s;
    for (auto _ : state) {
        std::uint64_t sum = 0;
        for (std::size_t i = 0; i < record_count; ++i)
            if (decoder.decode(std::span(buf.data() + i * 320, 320), s))
                sum += fold(s);
        benchmark::DoNotOptimize(sum);
    }
    state.SetItemsProcessed(std::int64_t(state.iterations() * record_count));
    state.SetBytesProcessed(std::int64_t(state.iterations() * buf.size()));
}

void decode_packed_buffer(benchmark::State& state)
{
    auto buf = make_records(layout_id::v2);
    sample_decoder decoder(negotiate_from_layout_id(2, 320));
    for (auto _ : state) {
        std::uint64_t sum = 0;
        decoder.decode_packed(buf, [&](const sample& s) { sum += fold(s); });
        benchmark::DoNotOptimize(sum);
    }
    state.SetItemsProcessed(std::int64_t(state.iterations() * record_count));
    state.SetBytesProcessed(std::int64_t(state.iterations() * buf.size()));
}

} // namespace

BENCHMARK(memcpy_same_bytes);
BENCHMARK_CAPTURE(decode_each_record, v2, layout_id::v2);
BENCHMARK_CAPTURE(decode_each_record, v1, layout_id::v1);
BENCHMARK(decode_packed_buffer);
BENCHMARK_MAIN();
