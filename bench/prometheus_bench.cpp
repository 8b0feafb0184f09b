// The exporter's costs: rendering a scrape (target: 10 k series in <= 10 ms on
// one core), publishing a snapshot (top K per group), and taking rollup rows.
#include <benchmark/benchmark.h>

#include <microsentinel/prometheus/http_exporter.hpp>
#include <microsentinel/prometheus/metrics_state.hpp>
#include <microsentinel/prometheus/render.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace prom = microsentinel::prometheus;
using microsentinel::direction;

namespace {

// `series` flow_cost series spread over both directions and the five events,
// with random 64-bit flow ids (the longest labels) and fractional costs.
prom::metrics_snapshot snapshot_with(std::size_t series)
{
    prom::metrics_snapshot s;
    std::mt19937_64 rng(42);
    std::uniform_real_distribution<double> cost(0.0, 1000.0);
    s.flow_costs.reserve(series);
    for (std::size_t i = 0; i < series; ++i)
        s.flow_costs.push_back({rng(), i % 100 == 99, direction(i / (series / 2 + 1)),
                                std::uint32_t(1 + (i / 100) % 5), cost(rng)});
    s.latest_window_start_ns = 1'700'000'000'000'000'000;
    for (auto& d : s.samples)
        for (auto& e : d)
            e = rng();
    s.dropped = {{"ring_full", 1}, {"throttled", 2}, {"truncated", 3}, {"oversized", 4}, {"bad_lbr_nr", 5}};
    s.layout = prom::layout_info{"v2", "btf"};
    s.writer = prom::writer_health{123456789, 3, 1 << 20};
    s.data_objects_registered = 77;
    return s;
}

void render_format(benchmark::State& state, prom::exposition_format format)
{
    const auto snap = snapshot_with(std::size_t(state.range(0)));
    std::size_t bytes = 0;
    for (auto _ : state) {
        std::string out = prom::render(snap, format); // a fresh body, as each scrape makes
        bytes = out.size();
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * state.range(0));
    state.SetBytesProcessed(std::int64_t(state.iterations() * bytes));
    state.counters["body_bytes"] = double(bytes);
}

void BM_render_text(benchmark::State& state) { render_format(state, prom::exposition_format::text); }
void BM_render_openmetrics(benchmark::State& state) { render_format(state, prom::exposition_format::openmetrics); }

std::vector<microsentinel::flow_rollup_row> rows_for(std::size_t flows, std::uint64_t window)
{
    std::vector<microsentinel::flow_rollup_row> rows;
    std::mt19937_64 rng(7);
    for (std::size_t i = 0; i < flows; ++i)
        rows.push_back({window, rng(), direction(i & 1), std::uint32_t(1 + i % 5), 0, 0x401000, 0, 1,
                        double(rng() % 10'000) / 8});
    return rows;
}

// The pipeline side of a publish: evict, group, select the top 50 of each of
// the 10 groups, copy into a new snapshot.
void BM_publish(benchmark::State& state)
{
    prom::metrics_state m;
    const auto rows = rows_for(std::size_t(state.range(0)), 1000);
    const auto now = prom::metrics_state::clock::now();
    m.add_flow_rows(rows, now);
    for (auto _ : state)
        m.publish(now);
    state.SetItemsProcessed(state.iterations() * state.range(0));
}

// Rows of a new window for flows already tracked.
void BM_add_flow_rows(benchmark::State& state)
{
    prom::metrics_state m;
    auto rows = rows_for(std::size_t(state.range(0)), 1000);
    const auto now = prom::metrics_state::clock::now();
    m.add_flow_rows(rows, now);
    std::uint64_t window = 1000;
    for (auto _ : state) {
        window += 1000;
        state.PauseTiming();
        for (auto& r : rows)
            r.window_start_ns = window;
        state.ResumeTiming();
        m.add_flow_rows(rows, now);
    }
    state.SetItemsProcessed(state.iterations() * state.range(0));
}

// One whole scrape over loopback as Prometheus makes it: connect, GET with
// OpenMetrics in Accept, read the response until the server closes.
void BM_http_scrape(benchmark::State& state)
{
    auto snap = std::make_shared<const prom::metrics_snapshot>(snapshot_with(std::size_t(state.range(0))));
    prom::http_options options;
    options.listen = "127.0.0.1:0";
    prom::http_exporter server(options, [snap] { return snap; });
    const std::string request = "GET /metrics HTTP/1.1\r\nHost: bench\r\n"
                                "Accept: application/openmetrics-text;version=1.0.0\r\n\r\n";
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(server.port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::vector<char> buf(1 << 20);
    std::size_t received = 0;
    for (auto _ : state) {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != ssize_t(request.size())) {
            state.SkipWithError("cannot reach the exporter on loopback");
            ::close(fd);
            break;
        }
        received = 0;
        for (ssize_t n; (n = ::recv(fd, buf.data(), buf.size(), 0)) > 0;)
            received += std::size_t(n);
        ::close(fd);
    }
    state.counters["response_bytes"] = double(received);
    state.SetItemsProcessed(state.iterations() * state.range(0));
}

} // namespace

BENCHMARK(BM_http_scrape)->Arg(10000)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_render_text)->Arg(1000)->Arg(10000)->Arg(100000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_render_openmetrics)->Arg(10000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_publish)->Arg(10000)->Arg(100000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_add_flow_rows)->Arg(10000)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
