// Flow rollup: hand-checked windows, the samples-in = samples-out invariant
// under random input with early flushes and late samples, determinism, and
// bounded memory without allocation per sample.
#include <doctest/doctest.h>

#include <microsentinel/rollup.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <new>
#include <random>
#include <span>
#include <stdexcept>
#include <tuple>
#include <vector>

// Counts heap allocations while armed, to prove add() never allocates.
namespace {
std::atomic<bool> count_allocations{false};
std::atomic<std::uint64_t> allocations{0};
} // namespace

// The replacement pair below is matched (malloc/free); g++ 12 cannot see that
// through inlining and warns.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t size)
{
    if (count_allocations.load(std::memory_order_relaxed))
        allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(size == 0 ? 1 : size))
        return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using microsentinel::direction;
using microsentinel::flow_rollup;
using microsentinel::flow_rollup_row;
using microsentinel::rollup_config;
using microsentinel::sample;

sample make_sample(std::uint64_t tsc, std::uint64_t flow, direction dir, std::uint32_t pmu = 0,
                   std::uint16_t numa = 0, std::uint32_t gso = 1)
{
    sample s{};
    s.tsc = tsc;
    s.pid = 42;
    s.flow_id = flow;
    s.dir = dir;
    s.pmu_event = pmu;
    s.numa_node = numa;
    s.gso_segs = gso;
    return s;
}

// Keeps every emission as its own batch.
struct batch_sink {
    std::vector<std::vector<flow_rollup_row>>* batches;
    void operator()(std::span<const flow_rollup_row> rows) const { batches->emplace_back(rows.begin(), rows.end()); }
};

struct counting_sink {
    std::uint64_t* rows;
    std::uint64_t* samples;
    void operator()(std::span<const flow_rollup_row> batch) const noexcept
    {
        *rows += batch.size();
        for (const auto& r : batch)
            *samples += r.samples;
    }
};

flow_rollup_row row(std::uint64_t window, std::uint64_t flow, direction dir, std::uint32_t pmu, std::uint16_t numa,
                    std::uint64_t function, std::uint64_t object, std::uint64_t samples, double cost)
{
    return flow_rollup_row{window, flow, dir, pmu, numa, function, object, samples, cost};
}

// Random input: flows, directions, events, NUMA nodes, GSO and objects vary;
// time mostly moves forward with some samples arriving late.
struct random_input {
    std::vector<sample> samples;
    std::vector<std::uint64_t> functions;
    std::vector<std::uint64_t> objects;
    std::vector<double> weights;
};

random_input make_random_input(std::uint64_t seed, std::size_t n, std::uint64_t flows)
{
    std::mt19937_64 rng(seed); // the engine's sequence is fixed by the standard
    random_input in;
    std::uint64_t now = 1'000'000;
    for (std::size_t i = 0; i < n; ++i) {
        now += rng() % 2000;
        std::uint64_t tsc = now;
        if (rng() % 50 == 0)
            tsc = now > 30'000 ? now - rng() % 30'000 : 0; // arrives late
        sample s = make_sample(tsc, 1 + rng() % flows, (rng() & 1) ? direction::tx : direction::rx,
                               static_cast<std::uint32_t>(rng() % 3), static_cast<std::uint16_t>(rng() % 2),
                               static_cast<std::uint32_t>(rng() % 5));
        in.samples.push_back(s);
        in.functions.push_back(0x400000 + (rng() % 4) * 0x10);
        in.objects.push_back(rng() % 3);
        in.weights.push_back(static_cast<double>(1 + rng() % 100));
    }
    return in;
}

using full_key = std::tuple<std::uint64_t, std::uint64_t, int, std::uint32_t, std::uint16_t, std::uint64_t, std::uint64_t>;

full_key key_of(const flow_rollup_row& r)
{
    return {r.window_start_ns, r.flow_id, int(r.dir), r.pmu_event, r.numa_node, r.function, r.data_object_id};
}

} // namespace

TEST_CASE("rollup sums samples and normalized cost per key and emits a window once the watermark passes it")
{
    std::vector<std::vector<flow_rollup_row>> batches;
    rollup_config cfg;
    cfg.window_ns = 100;
    cfg.max_entries = 16;
    cfg.sampling_scale = 2.0;
    flow_rollup rollup(cfg, batch_sink{&batches});

    rollup.add(make_sample(10, 1, direction::rx), 0x10, 0);
    rollup.add(make_sample(20, 1, direction::rx, 0, 0, 4), 0x10, 0, 1.0); // 1 / 4 segments * 2
    rollup.add(make_sample(30, 2, direction::tx, 0, 0, 0), 0x10, 0);     // gso 0 counts as 1
    rollup.add(make_sample(50, 1, direction::tx), 0x10, 0, 3.0);
    rollup.add(make_sample(60, 1, direction::rx, 0, 1), 0x10, 7); // other NUMA node and object
    CHECK(batches.empty());

    rollup.add(make_sample(120, 1, direction::rx), 0x20, 0); // watermark 120 closes window [0,100)
    REQUIRE(batches.size() == 1);
    CHECK(batches[0] == std::vector<flow_rollup_row>{
                            row(0, 1, direction::rx, 0, 0, 0x10, 0, 2, 2.5),
                            row(0, 1, direction::rx, 0, 1, 0x10, 7, 1, 2.0),
                            row(0, 1, direction::tx, 0, 0, 0x10, 0, 1, 6.0),
                            row(0, 2, direction::tx, 0, 0, 0x10, 0, 1, 2.0),
                        });

    rollup.add(make_sample(90, 3, direction::rx), 0x10, 0); // its window closed: late
    CHECK(rollup.stats().late_samples == 1);
    CHECK(batches.size() == 1);

    rollup.add(make_sample(210, 1, direction::rx), 0x20, 0); // closes [100,200), the late row goes too
    REQUIRE(batches.size() == 2);
    CHECK(batches[1] == std::vector<flow_rollup_row>{
                            row(0, 3, direction::rx, 0, 0, 0x10, 0, 1, 2.0),
                            row(100, 1, direction::rx, 0, 0, 0x20, 0, 1, 2.0),
                        });

    rollup.flush();
    REQUIRE(batches.size() == 3);
    CHECK(batches[2] == std::vector<flow_rollup_row>{row(200, 1, direction::rx, 0, 0, 0x20, 0, 1, 2.0)});

    const auto& st = rollup.stats();
    CHECK(st.samples_in == 8);
    CHECK(st.samples_emitted == 8);
    CHECK(st.rows_emitted == 7);
    CHECK(st.window_closes == 2);
    CHECK(st.early_flushes == 0);
    CHECK(rollup.entries() == 0);
}

TEST_CASE("allowed lateness holds a window open until the watermark passes its end")
{
    std::vector<std::vector<flow_rollup_row>> batches;
    rollup_config cfg;
    cfg.window_ns = 100;
    cfg.allowed_lateness_ns = 50;
    flow_rollup rollup(cfg, batch_sink{&batches});

    rollup.add(make_sample(10, 1, direction::rx), 1, 0);
    rollup.add(make_sample(140, 1, direction::rx), 1, 0); // watermark 90: window 0 still open
    rollup.add(make_sample(95, 1, direction::rx), 1, 0);  // in time
    CHECK(batches.empty());
    CHECK(rollup.stats().late_samples == 0);
    rollup.add(make_sample(150, 1, direction::rx), 1, 0); // watermark 100 closes window 0
    REQUIRE(batches.size() == 1);
    CHECK(batches[0] == std::vector<flow_rollup_row>{row(0, 1, direction::rx, 0, 0, 1, 0, 2, 2.0)});
    rollup.add(make_sample(99, 1, direction::rx), 1, 0);
    CHECK(rollup.stats().late_samples == 1);
}

TEST_CASE("advance_time closes windows while no samples arrive")
{
    std::vector<std::vector<flow_rollup_row>> batches;
    rollup_config cfg;
    cfg.window_ns = 1000;
    flow_rollup rollup(cfg, batch_sink{&batches});
    rollup.add(make_sample(500, 9, direction::tx), 1, 0);
    rollup.advance_time(999);
    CHECK(batches.empty());
    rollup.advance_time(1000);
    REQUIRE(batches.size() == 1);
    CHECK(batches[0] == std::vector<flow_rollup_row>{row(0, 9, direction::tx, 0, 0, 1, 0, 1, 1.0)});
}

TEST_CASE("windows are aligned to and labelled with wall-clock time when boot_to_wall_ns is set")
{
    std::vector<std::vector<flow_rollup_row>> batches;
    rollup_config cfg;
    cfg.window_ns = 1'000'000'000;
    cfg.boot_to_wall_ns = 1'700'000'000'250'000'000; // boot at wall second 1700000000.25
    flow_rollup rollup(cfg, batch_sink{&batches});
    rollup.add(make_sample(5'800'000'000, 1, direction::rx), 1, 0); // wall 1700000006.05
    rollup.flush();
    REQUIRE(batches.size() == 1);
    REQUIRE(batches[0].size() == 1);
    CHECK(batches[0][0].window_start_ns == 1'700'000'006'000'000'000ULL);
}

TEST_CASE("a full table emits everything early and keeps counting; partial rows add up")
{
    std::vector<std::vector<flow_rollup_row>> batches;
    rollup_config cfg;
    cfg.window_ns = 1000;
    cfg.max_entries = 3;
    flow_rollup rollup(cfg, batch_sink{&batches});

    for (std::uint64_t flow : {5, 4, 3, 4})
        rollup.add(make_sample(10, flow, direction::rx), 1, 0);
    CHECK(batches.empty());
    rollup.add(make_sample(11, 6, direction::rx), 1, 0); // fourth key: table full
    REQUIRE(batches.size() == 1);
    CHECK(batches[0] == std::vector<flow_rollup_row>{
                            row(0, 3, direction::rx, 0, 0, 1, 0, 1, 1.0),
                            row(0, 4, direction::rx, 0, 0, 1, 0, 2, 2.0),
                            row(0, 5, direction::rx, 0, 0, 1, 0, 1, 1.0),
                        });
    rollup.add(make_sample(12, 4, direction::rx), 1, 0);
    rollup.flush();
    REQUIRE(batches.size() == 2);
    CHECK(batches[1] == std::vector<flow_rollup_row>{
                            row(0, 4, direction::rx, 0, 0, 1, 0, 1, 1.0),
                            row(0, 6, direction::rx, 0, 0, 1, 0, 1, 1.0),
                        });
    CHECK(rollup.stats().early_flushes == 1);
    CHECK(rollup.stats().samples_in == 6);
    CHECK(rollup.stats().samples_emitted == 6);
}

TEST_CASE("samples in equal samples out, per key, across early flushes, window closes and late samples")
{
    for (std::uint64_t seed : {1u, 2u, 3u}) {
        for (std::size_t max_entries : {std::size_t{7}, std::size_t{64}, std::size_t{100000}}) {
            CAPTURE(seed);
            CAPTURE(max_entries);
            const random_input in = make_random_input(seed, 20000, 300);
            std::vector<std::vector<flow_rollup_row>> batches;
            rollup_config cfg;
            cfg.window_ns = 100'000;
            cfg.max_entries = max_entries;
            cfg.allowed_lateness_ns = seed == 2 ? 20'000 : 0;
            cfg.sampling_scale = 3.0;
            flow_rollup rollup(cfg, batch_sink{&batches});
            const std::size_t memory = rollup.memory_bytes();

            // Reference sums computed independently of the rollup.
            std::map<full_key, std::pair<std::uint64_t, double>> expected;
            bool bounded = true;
            // A sample is late when its window ends at or before the
            // watermark: the highest time seen (its own included) minus the
            // allowed lateness.
            std::uint64_t max_tsc = 0, expected_late = 0;
            for (std::size_t i = 0; i < in.samples.size(); ++i) {
                const sample& s = in.samples[i];
                rollup.add(s, in.functions[i], in.objects[i], in.weights[i]);
                bounded = bounded && rollup.entries() <= max_entries;
                const std::uint64_t window = s.tsc / cfg.window_ns * cfg.window_ns;
                auto& e = expected[{window, s.flow_id, int(s.dir), s.pmu_event, s.numa_node, in.functions[i],
                                    in.objects[i]}];
                e.first += 1;
                e.second += in.weights[i] / (s.gso_segs > 1 ? s.gso_segs : 1) * cfg.sampling_scale;
                max_tsc = std::max(max_tsc, s.tsc);
                const std::uint64_t watermark = max_tsc > cfg.allowed_lateness_ns ? max_tsc - cfg.allowed_lateness_ns : 0;
                if (window + cfg.window_ns <= watermark)
                    ++expected_late;
            }
            rollup.flush();
            CHECK(bounded);
            CHECK(rollup.memory_bytes() == memory);

            std::map<full_key, std::pair<std::uint64_t, double>> got;
            std::uint64_t emitted = 0;
            bool sorted_unique = true;
            for (const auto& batch : batches) {
                CHECK(batch.size() <= max_entries);
                for (std::size_t i = 0; i < batch.size(); ++i) {
                    if (i > 0 && !(key_of(batch[i - 1]) < key_of(batch[i])))
                        sorted_unique = false;
                    auto& g = got[key_of(batch[i])];
                    g.first += batch[i].samples;
                    g.second += batch[i].norm_cost;
                    emitted += batch[i].samples;
                }
            }
            CHECK(sorted_unique);
            CHECK(emitted == in.samples.size());
            CHECK(rollup.stats().samples_in == in.samples.size());
            CHECK(rollup.stats().samples_emitted == emitted);
            CHECK(expected_late > 0);
            CHECK(rollup.stats().late_samples == expected_late);
            if (max_entries == 7)
                CHECK(rollup.stats().early_flushes > 0);
            if (max_entries == 100000)
                CHECK(rollup.stats().early_flushes == 0);
            REQUIRE(got.size() == expected.size());
            bool sums_match = true;
            for (const auto& [key, want] : expected) {
                auto it = got.find(key);
                if (it == got.end() || it->second.first != want.first
                    || std::abs(it->second.second - want.second) > 1e-9 * want.second)
                    sums_match = false;
            }
            CHECK(sums_match);
        }
    }
}

// Every key hashes alike: probing and the rebuild after extract_if must
// still find each key.
struct colliding_hash {
    std::uint64_t operator()(std::uint64_t) const noexcept { return 0x1234; }
};

TEST_CASE("the flat table finds every key through collisions and after removing some")
{
    microsentinel::detail::flat_table<std::uint64_t, std::uint64_t, colliding_hash> table(100);
    for (std::uint64_t k = 0; k < 100; ++k)
        *table.find_or_insert(k) = k * 10;
    CHECK(table.full());
    CHECK(table.find_or_insert(1000) == nullptr);
    std::vector<std::uint64_t> removed;
    table.extract_if([](const auto& e) { return e.key % 3 == 0; }, [&](const auto& e) { removed.push_back(e.key); });
    CHECK(removed.size() == 34);
    CHECK(table.size() == 66);
    bool found_all = true;
    for (std::uint64_t k = 0; k < 100; ++k) {
        if (k % 3 == 0)
            continue;
        const std::uint64_t* v = table.find_or_insert(k);
        found_all = found_all && v != nullptr && *v == k * 10;
    }
    CHECK(found_all);
    CHECK(table.size() == 66);
    CHECK(*table.find_or_insert(3) == 0); // removed keys come back fresh
    CHECK(table.size() == 67);
}

TEST_CASE("the same input gives the same rows in the same order")
{
    const random_input in = make_random_input(7, 20000, 500);
    auto run = [&] {
        std::vector<std::vector<flow_rollup_row>> batches;
        rollup_config cfg;
        cfg.window_ns = 50'000;
        cfg.max_entries = 97;
        flow_rollup rollup(cfg, batch_sink{&batches});
        for (std::size_t i = 0; i < in.samples.size(); ++i)
            rollup.add(in.samples[i], in.functions[i], in.objects[i], in.weights[i]);
        rollup.flush();
        return batches;
    };
    const auto first = run();
    const auto second = run();
    REQUIRE(first.size() > 10);
    CHECK(first == second);
}

TEST_CASE("add() allocates nothing and the table never grows past max_entries")
{
    const random_input in = make_random_input(11, 50000, 4096);
    std::uint64_t rows = 0, samples = 0;
    rollup_config cfg;
    cfg.window_ns = 10'000'000;
    cfg.max_entries = 1024;
    flow_rollup rollup(cfg, counting_sink{&rows, &samples});
    const std::size_t memory = rollup.memory_bytes();
    std::size_t most_entries = 0;

    allocations = 0;
    count_allocations = true;
    for (std::size_t i = 0; i < in.samples.size(); ++i) {
        rollup.add(in.samples[i], in.functions[i], in.objects[i], in.weights[i]);
        most_entries = std::max(most_entries, rollup.entries());
    }
    rollup.flush();
    count_allocations = false;

    CHECK(allocations == 0);
    CHECK(most_entries == 1024);
    CHECK(rollup.stats().early_flushes > 0);
    CHECK(rollup.memory_bytes() == memory);
    CHECK(samples == in.samples.size());
}

// Fails its first `failures` calls, like a writer whose queue is full.
struct flaky_sink {
    int* failures;
    std::vector<flow_rollup_row>* rows;
    void operator()(std::span<const flow_rollup_row> batch) const
    {
        if (*failures > 0) {
            --*failures;
            throw std::runtime_error("sink unavailable");
        }
        rows->insert(rows->end(), batch.begin(), batch.end());
    }
};

TEST_CASE("rows a throwing sink was given stay in the rollup and are emitted again")
{
    int failures = 2;
    std::vector<flow_rollup_row> rows;
    rollup_config cfg;
    cfg.window_ns = 100;
    cfg.max_entries = 2;
    flow_rollup rollup(cfg, flaky_sink{&failures, &rows});
    rollup.add(make_sample(10, 1, direction::rx), 1, 0);
    rollup.add(make_sample(20, 2, direction::rx), 1, 0);
    CHECK_THROWS_AS(rollup.add(make_sample(30, 3, direction::rx), 1, 0), std::runtime_error); // early flush fails
    CHECK(rollup.entries() == 2);
    CHECK(rollup.stats().samples_in == 2);
    CHECK_THROWS_AS(rollup.add(make_sample(150, 1, direction::rx), 1, 0), std::runtime_error); // window close fails
    CHECK(rollup.entries() == 2);
    rollup.add(make_sample(160, 1, direction::rx), 1, 0); // the next emission (an early flush) carries them
    rollup.flush();
    CHECK(rows == std::vector<flow_rollup_row>{
                      row(0, 1, direction::rx, 0, 0, 1, 0, 1, 1.0),
                      row(0, 2, direction::rx, 0, 0, 1, 0, 1, 1.0),
                      row(100, 1, direction::rx, 0, 0, 1, 0, 1, 1.0),
                  });
    CHECK(rollup.stats().samples_in == 3);
    CHECK(rollup.stats().samples_emitted == 3);
}

TEST_CASE("an invalid configuration is rejected with the field it names")
{
    std::vector<std::vector<flow_rollup_row>> batches;
    rollup_config cfg;
    cfg.window_ns = 0;
    CHECK_THROWS_WITH_AS(flow_rollup(cfg, batch_sink{&batches}), doctest::Contains("window_ns"),
                         std::invalid_argument);
    cfg = rollup_config{};
    cfg.max_entries = 0;
    CHECK_THROWS_WITH_AS(flow_rollup(cfg, batch_sink{&batches}), doctest::Contains("max_entries"),
                         std::invalid_argument);
}
