// Rollup throughput (target: >= 20 M samples/s per core with 4096 flows) and
// data-object registry lookups.
#include <benchmark/benchmark.h>

#include <microsentinel/data_objects.hpp>
#include <microsentinel/rollup.hpp>

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include <unistd.h>

namespace {

using microsentinel::flow_rollup_row;
using microsentinel::sample;

struct counting_sink {
    std::uint64_t rows = 0;
    void operator()(std::span<const flow_rollup_row> batch) noexcept { rows += batch.size(); }
};

struct input {
    std::vector<sample> samples;
    std::vector<std::uint64_t> functions;
    std::vector<std::uint64_t> objects;
};

// flows flows, each with 2 functions and 2 data objects: 4 * flows keys per
// window; samples 50 ns apart (20 M/s), so a 1 s window closes every 20 M.
input make_input(std::size_t n, std::uint64_t flows)
{
    std::mt19937_64 rng(42);
    input in;
    for (std::size_t i = 0; i < n; ++i) {
        sample s{};
        const std::uint64_t flow = rng() % flows;
        s.tsc = i * 50;
        s.pid = 1000 + static_cast<std::uint32_t>(flow % 64);
        s.flow_id = 0x9e3779b97f4a7c15ULL * (flow + 1);
        s.dir = (flow & 1) ? microsentinel::direction::tx : microsentinel::direction::rx;
        s.pmu_event = 0;
        s.numa_node = static_cast<std::uint16_t>(flow & 1);
        s.gso_segs = 1 + static_cast<std::uint32_t>(rng() % 4);
        s.ip = 0x401000 + (rng() % 2) * 0x40;
        in.samples.push_back(s);
        in.functions.push_back(s.ip);
        in.objects.push_back(1 + rng() % 2);
    }
    return in;
}

void run_rollup(benchmark::State& state, std::size_t max_entries)
{
    const std::uint64_t flows = static_cast<std::uint64_t>(state.range(0));
    const input in = make_input(1 << 20, flows);
    microsentinel::rollup_config cfg;
    cfg.max_entries = max_entries;
    microsentinel::flow_rollup rollup(cfg, counting_sink{});
    const std::uint64_t pass_ns = in.samples.size() * 50;
    std::uint64_t pass = 0;
    sample s{};
    for (auto _ : state) {
        const std::uint64_t base = pass++ * pass_ns;
        for (std::size_t i = 0; i < in.samples.size(); ++i) {
            s = in.samples[i];
            s.tsc += base;
            rollup.add(s, in.functions[i], in.objects[i]);
        }
    }
    rollup.flush();
    benchmark::DoNotOptimize(rollup.sink().rows);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * in.samples.size()));
    state.counters["early_flushes"] = static_cast<double>(rollup.stats().early_flushes);
    state.counters["window_closes"] = static_cast<double>(rollup.stats().window_closes);
}

// Default table (65536 entries): windows close on the watermark only.
void BM_rollup_add(benchmark::State& state) { run_rollup(state, 65536); }
BENCHMARK(BM_rollup_add)->Arg(4096)->Arg(16384)->Unit(benchmark::kMillisecond);

// A table smaller than the keys per window: constant early flushes.
void BM_rollup_add_small_table(benchmark::State& state) { run_rollup(state, 4096); }
BENCHMARK(BM_rollup_add_small_table)->Arg(4096)->Unit(benchmark::kMillisecond);

// Lookups of addresses inside this process's own data mappings.
void BM_registry_resolve_auto(benchmark::State& state)
{
    microsentinel::registry_config cfg;
    microsentinel::data_object_registry reg("bench", cfg);
    const std::uint32_t pid = static_cast<std::uint32_t>(getpid());
    if (!reg.refresh(pid)) {
        state.SkipWithError("cannot read /proc/self/maps");
        return;
    }
    std::vector<std::uint64_t> addrs;
    std::mt19937_64 rng(1);
    const auto rows = reg.take_new_objects();
    for (int i = 0; i < 4096; ++i) {
        const auto& r = rows[rng() % rows.size()];
        addrs.push_back(r.base + rng() % r.size);
    }
    std::size_t i = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(reg.resolve(pid, addrs[i]));
        i = (i + 1) & 4095;
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["regions"] = static_cast<double>(rows.size());
}
BENCHMARK(BM_registry_resolve_auto);

// Lookups among n explicit objects of one process, several processes interleaved.
void BM_registry_resolve_explicit(benchmark::State& state)
{
    microsentinel::registry_config cfg;
    cfg.auto_register = false;
    microsentinel::data_object_registry reg("bench", cfg);
    const std::uint64_t n = static_cast<std::uint64_t>(state.range(0));
    const std::uint32_t pid = static_cast<std::uint32_t>(getpid());
    for (std::uint64_t k = 0; k < n; ++k)
        reg.register_object(pid, "obj" + std::to_string(k), 0x10000000 + k * 0x10000, 0x8000);
    std::vector<std::uint64_t> addrs;
    std::mt19937_64 rng(2);
    for (int i = 0; i < 4096; ++i)
        addrs.push_back(0x10000000 + (rng() % n) * 0x10000 + rng() % 0x8000);
    std::size_t i = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(reg.resolve(pid, addrs[i]));
        i = (i + 1) & 4095;
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_registry_resolve_explicit)->Arg(16)->Arg(1024)->Arg(65536);

// The agent's per-sample path: resolve the data address, then roll up.
void BM_resolve_then_rollup(benchmark::State& state)
{
    microsentinel::data_object_registry reg("bench", microsentinel::registry_config{});
    const std::uint32_t pid = static_cast<std::uint32_t>(getpid());
    if (!reg.refresh(pid)) {
        state.SkipWithError("cannot read /proc/self/maps");
        return;
    }
    const auto rows = reg.take_new_objects();
    input in = make_input(1 << 20, 4096);
    std::mt19937_64 rng(3);
    for (auto& s : in.samples) { // each flow touches two of the objects: 16384 keys, as above
        const auto& r = rows[(s.flow_id + rng() % 2) % rows.size()];
        s.pid = pid;
        s.data_addr = r.base + rng() % r.size;
    }
    microsentinel::flow_rollup rollup(microsentinel::rollup_config{}, counting_sink{});
    const std::uint64_t pass_ns = in.samples.size() * 50;
    std::uint64_t pass = 0;
    sample s{};
    for (auto _ : state) {
        const std::uint64_t base = pass++ * pass_ns;
        for (const sample& in_sample : in.samples) {
            s = in_sample;
            s.tsc += base;
            rollup.add(s, s.ip, reg.resolve(s.pid, s.data_addr));
        }
    }
    rollup.flush();
    benchmark::DoNotOptimize(rollup.sink().rows);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * in.samples.size()));
    state.counters["early_flushes"] = static_cast<double>(rollup.stats().early_flushes);
}
BENCHMARK(BM_resolve_then_rollup)->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
