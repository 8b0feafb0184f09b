// The ClickHouse writer's speed.
//
// - serialization of raw-sample rows: RowBinary (what the writer sends) vs
//   JSONEachRow (the text alternative), one core;
// - sustained insert through the writer into a local clickhouse-server
//   (started here, the tests' harness, pre-migration 18.16 schema);
// - that server's own ceiling for the same rows: clickhouse-client --query
//   "INSERT ... FORMAT RowBinary" fed the writer's exact payload over TCP.
#include <benchmark/benchmark.h>

#include <microsentinel/clickhouse/writer.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "clickhouse_server.hpp"
#include "writer_fixtures.hpp"

namespace ch = microsentinel::clickhouse;
using microsentinel::direction;
using microsentinel::sample;

namespace {

std::vector<sample> make_samples(std::size_t n)
{
    std::vector<sample> v(n);
    for (std::size_t i = 0; i < n; ++i) {
        sample& s = v[i];
        s = {};
        s.tsc = 1'000'000'000 + i * 997;
        s.cpu = std::uint32_t(i % 2);
        s.pid = 1000 + std::uint32_t(i % 7);
        s.tid = s.pid + std::uint32_t(i % 3);
        s.pmu_event = 1 + std::uint32_t(i % 2);
        s.ip = 0x400000 + (i * 2654435761u) % 0x100000;
        s.data_addr = i % 2 ? 0x7f0000000000 + i * 64 : 0;
        s.flow_id = 0x9e3779b97f4a7c15ull * (i % 97 + 1);
        s.gso_segs = 1 + std::uint32_t(i % 4);
        s.ingress_ifindex = 2;
        s.numa_node = std::uint16_t(i % 2);
        s.l4_proto = 6;
        s.dir = i % 2 ? direction::tx : direction::rx;
    }
    return v;
}

// system.columns of the current migrated ms_raw_samples (DateTime64, direction).
ch::column_plan migrated_plan()
{
    return ch::map_columns(ch::raw_samples_table,
                           ch::parse_system_columns("ts\tDateTime64(9)\t\nhost\tLowCardinality(String)\t\ncpu\tUInt32\t\n"
                                                    "pid\tUInt32\t\ntid\tUInt32\t\npmu_event\tUInt32\t\nip\tUInt64\t\n"
                                                    "data_addr\tUInt64\t\nflow_id\tUInt64\t\ngso_segs\tUInt32\t\n"
                                                    "ingress_ifindex\tUInt16\t\nnuma_node\tUInt16\t\nl4_proto\tUInt8\t\n"
                                                    "lbr_nr\tUInt8\t\ndata_object_id\tUInt64\t\ndirection\tUInt8\tDEFAULT\n"));
}

void BM_serialize_raw_rowbinary(benchmark::State& state)
{
    auto samples = make_samples(65536);
    auto plan = migrated_plan();
    ch::raw_sample_context ctx{"host-01.example", 1'700'000'000'000'000'000};
    ch::rowbinary_buffer out;
    out.reserve(16u << 20);
    for (auto _ : state) {
        out.clear();
        for (const auto& s : samples)
            ch::encode_raw_sample(out, plan, s, 0, ctx);
        benchmark::DoNotOptimize(out.view().data());
    }
    state.SetItemsProcessed(std::int64_t(state.iterations() * samples.size()));
    state.counters["bytes_per_row"] = double(out.size()) / double(samples.size());
}
BENCHMARK(BM_serialize_raw_rowbinary)->Unit(benchmark::kMillisecond);

// The same rows as JSONEachRow, written as tightly as a hand encoder can.
void append_u64(std::string& out, std::uint64_t v)
{
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, end);
}

void BM_serialize_raw_jsoneachrow(benchmark::State& state)
{
    auto samples = make_samples(65536);
    const std::string host = "host-01.example";
    const std::int64_t boot_to_wall = 1'700'000'000'000'000'000;
    std::string out;
    out.reserve(64u << 20);
    for (auto _ : state) {
        out.clear();
        for (const auto& s : samples) {
            std::uint64_t ns = std::uint64_t(std::int64_t(s.tsc) + boot_to_wall);
            out += "{\"ts\":";
            append_u64(out, ns / 1'000'000'000);
            out += '.';
            char frac[10];
            std::snprintf(frac, sizeof frac, "%09llu", static_cast<unsigned long long>(ns % 1'000'000'000));
            out += frac;
            out += ",\"host\":\"";
            out += host;
            out += "\",\"cpu\":";
            append_u64(out, s.cpu);
            out += ",\"pid\":";
            append_u64(out, s.pid);
            out += ",\"tid\":";
            append_u64(out, s.tid);
            out += ",\"pmu_event\":";
            append_u64(out, s.pmu_event);
            out += ",\"ip\":";
            append_u64(out, s.ip);
            out += ",\"data_addr\":";
            append_u64(out, s.data_addr);
            out += ",\"flow_id\":";
            append_u64(out, s.flow_id);
            out += ",\"gso_segs\":";
            append_u64(out, s.gso_segs);
            out += ",\"ingress_ifindex\":";
            append_u64(out, s.ingress_ifindex);
            out += ",\"numa_node\":";
            append_u64(out, s.numa_node);
            out += ",\"l4_proto\":";
            append_u64(out, s.l4_proto);
            out += ",\"lbr_nr\":";
            append_u64(out, s.lbr_nr);
            out += ",\"data_object_id\":0,\"direction\":";
            append_u64(out, std::uint8_t(s.dir));
            out += "}\n";
        }
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(std::int64_t(state.iterations() * samples.size()));
    state.counters["bytes_per_row"] = double(out.size()) / double(samples.size());
}
BENCHMARK(BM_serialize_raw_jsoneachrow)->Unit(benchmark::kMillisecond);

// One server for the insert benchmarks, with the 18.16 test schema.
microsentinel::testing::clickhouse_server& server()
{
    auto& instance = microsentinel::testing::shared_server<microsentinel::testing::clickhouse_server>();
    static const bool schema = (microsentinel::testing::run_sql_file(instance, MS_SCHEMA_18_16), true);
    (void)schema;
    return instance;
}

bool have_server()
{
    return !microsentinel::testing::find_program("clickhouse-server").empty();
}

constexpr std::size_t insert_rows = 1u << 20;

void BM_insert_writer(benchmark::State& state)
{
    if (!have_server()) {
        state.SkipWithError("clickhouse-server not installed");
        return;
    }
    auto samples = make_samples(insert_rows);
    char dir[] = "/tmp/ms-ch-bench-spool-XXXXXX";
    if (!mkdtemp(dir)) {
        state.SkipWithError("mkdtemp failed");
        return;
    }
    ch::writer_options o;
    o.urls = {server().url()};
    o.spool_dir = dir;
    o.batch_rows = std::size_t(state.range(0));
    o.batch_bytes = 64u << 20;
    o.spool_max_bytes = 1ull << 30;
    o.host = "host-01.example";
    o.client.compress = state.range(1) != 0;
    o.log = [](std::string_view) {};
    ch::writer w(o);
    for (auto _ : state) {
        state.PauseTiming();
        server().query("TRUNCATE TABLE ms_raw_samples"); // every run inserts into an empty table
        state.ResumeTiming();
        for (const auto& s : samples)
            w.add(s);
        if (!w.drain(std::chrono::seconds(60))) {
            state.SkipWithError(("insert failed: " + w.last_error()).c_str());
            break;
        }
    }
    state.SetItemsProcessed(std::int64_t(state.iterations() * samples.size()));
    state.counters["spooled_batches"] = double(w.stats().batches_spooled);
    std::filesystem::remove_all(dir);
}
BENCHMARK(BM_insert_writer)->Args({65536, 0})->Args({262144, 0})->Args({65536, 1})->ArgNames({"batch_rows", "gzip"})
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

// The same rows serialized once by the writer's encoder for the server's
// columns, in a file for clickhouse-client, and its INSERT query.
struct client_input {
    std::string file = "/tmp/ms-ch-bench-ceiling.rowbinary";
    std::string query;
    ~client_input() { std::filesystem::remove(file); }
};

void prepare_client_input(client_input& in, const std::vector<sample>& samples)
{
    auto columns = ch::parse_system_columns(server().query(
        "SELECT name, type, default_kind FROM system.columns WHERE database = currentDatabase() AND table = 'ms_raw_samples'"));
    auto plan = ch::map_columns(ch::raw_samples_table, columns);
    ch::rowbinary_buffer payload;
    ch::raw_sample_context ctx{"host-01.example", 0};
    for (const auto& s : samples)
        ch::encode_raw_sample(payload, plan, s, 0, ctx);
    std::ofstream(in.file, std::ios::binary).write(payload.view().data(), std::streamsize(payload.size()));
    in.query = "INSERT INTO ms_raw_samples " + plan.column_list() + " FORMAT RowBinary";
}

// Seconds clickhouse-client (native TCP) takes to insert the file; < 0 on failure.
double client_insert_seconds(const std::string& client, const client_input& in)
{
    std::string port = std::to_string(server().tcp_port());
    auto start = std::chrono::steady_clock::now();
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(in.file.c_str(), O_RDONLY);
        dup2(fd, 0);
        execl(client.c_str(), client.c_str(), "--host", "127.0.0.1", "--port", port.c_str(), "--query", in.query.c_str(),
              nullptr);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The server's own ceiling: clickhouse-client inserting the same rows.
void BM_insert_clickhouse_client_ceiling(benchmark::State& state)
{
    std::string client = microsentinel::testing::find_program("clickhouse-client");
    if (!have_server() || client.empty()) {
        state.SkipWithError("clickhouse-server or clickhouse-client not installed");
        return;
    }
    auto samples = make_samples(insert_rows);
    client_input in;
    prepare_client_input(in, samples);
    for (auto _ : state) {
        server().query("TRUNCATE TABLE ms_raw_samples"); // outside the manual time
        double seconds = client_insert_seconds(client, in);
        if (seconds < 0) {
            state.SkipWithError("clickhouse-client failed");
            break;
        }
        state.SetIterationTime(seconds);
    }
    state.SetItemsProcessed(std::int64_t(state.iterations() * samples.size()));
}
BENCHMARK(BM_insert_clickhouse_client_ceiling)->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(3);

// Writer and clickhouse-client back to back in every iteration, so both meet
// the same load on a shared machine: the fair side-by-side comparison.
void BM_insert_writer_beside_client(benchmark::State& state)
{
    std::string client = microsentinel::testing::find_program("clickhouse-client");
    if (!have_server() || client.empty()) {
        state.SkipWithError("clickhouse-server or clickhouse-client not installed");
        return;
    }
    auto samples = make_samples(insert_rows);
    client_input in;
    prepare_client_input(in, samples);
    char dir[] = "/tmp/ms-ch-bench-spool-XXXXXX";
    if (!mkdtemp(dir)) {
        state.SkipWithError("mkdtemp failed");
        return;
    }
    ch::writer_options o;
    o.urls = {server().url()};
    o.spool_dir = dir;
    o.host = "host-01.example";
    o.log = [](std::string_view) {};
    ch::writer w(o); // the binary's defaults: 65536 rows / 8 MiB per batch, no gzip
    double writer_seconds = 0, client_seconds = 0;
    for (auto _ : state) {
        server().query("TRUNCATE TABLE ms_raw_samples");
        auto start = std::chrono::steady_clock::now();
        for (const auto& s : samples)
            w.add(s);
        if (!w.drain(std::chrono::seconds(60))) {
            state.SkipWithError(("insert failed: " + w.last_error()).c_str());
            break;
        }
        double ws = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        server().query("TRUNCATE TABLE ms_raw_samples");
        double cs = client_insert_seconds(client, in);
        if (cs < 0) {
            state.SkipWithError("clickhouse-client failed");
            break;
        }
        writer_seconds += ws;
        client_seconds += cs;
        state.SetIterationTime(ws);
    }
    state.SetItemsProcessed(std::int64_t(state.iterations() * samples.size()));
    state.counters["writer_rows_per_s"] = double(state.iterations() * samples.size()) / writer_seconds;
    state.counters["client_rows_per_s"] = double(state.iterations() * samples.size()) / client_seconds;
    std::filesystem::remove_all(dir);
}
BENCHMARK(BM_insert_writer_beside_client)->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(3);

} // namespace

BENCHMARK_MAIN();
