// micro_sentinel_ch_writer as a process against a real clickhouse-server
// 18.16: captures written field by field here, exit codes, messages, the
// spool across a kill -9 of the writer.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "clickhouse_server.hpp"
#include "temp_dir.hpp"
#include "writer_fixtures.hpp"

using microsentinel::testing::clickhouse_server;
using microsentinel::testing::temp_dir;
using namespace std::chrono_literals;

namespace {

clickhouse_server& server() { return microsentinel::testing::shared_server<clickhouse_server>(); }

std::uint64_t number(const std::string& sql) { return microsentinel::testing::query_number(server(), sql); }

void fresh_schema() { microsentinel::testing::fresh_schema(server()); }

// Capture bytes, little-endian, field by field (docs/capture-format.md).
struct capture_bytes : microsentinel::testing::le_bytes {
    // Header: magic, version 1, reserved, header_len, boot_to_wall, host, layout block (id 2, 320 bytes, no fields).
    static capture_bytes header(const std::string& host)
    {
        capture_bytes h;
        h.s = "MSENTCAP";
        std::uint32_t len = 8 + 2 + 2 + 4 + 8 + 2 + std::uint32_t(host.size()) + 4 + 4 + 2;
        h.le(std::uint16_t(1)).le(std::uint16_t(0)).le(len).le(std::int64_t(1'700'000'000'000'000'000));
        h.le(std::uint16_t(host.size()));
        h.s += host;
        h.le(std::uint32_t(2)).le(std::uint32_t(320)).le(std::uint16_t(0));
        return h;
    }

    // The header and samples 0 .. count-1.
    static capture_bytes with_samples(const std::string& host, std::uint64_t count)
    {
        capture_bytes c = header(host);
        for (std::uint64_t i = 0; i < count; ++i)
            c.sample(i);
        return c;
    }

    // A v2 sample frame: key ip = i; odd samples are tx.
    capture_bytes& sample(std::uint64_t i, std::uint32_t pid = 100, std::uint64_t data_addr = 0)
    {
        le(std::uint32_t(1)).le(std::uint32_t(320));
        std::size_t start = s.size();
        le(std::uint64_t(1'000'000'000 + i * 1000)); // tsc
        le(std::uint32_t(i % 2)).le(pid).le(pid + 1).le(std::uint32_t(2));                  // cpu pid tid event
        le(std::uint64_t(i)).le(data_addr).le(std::uint64_t(7 + i % 5));                      // ip data_addr flow
        le(std::uint32_t(1)).le(std::uint16_t(2)).le(std::uint16_t(0)).le(std::uint8_t(6));          // gso ifindex numa l4
        le(std::uint8_t(i % 2)).le(std::uint8_t(0)).le(std::uint8_t(0));                             // direction lbr_nr pad
        le(std::uint32_t(0));                                                                        // to offset 64
        s.append(320 - (s.size() - start), '\0');
        return *this;
    }
};

struct run_result {
    int exit_code = -1;
    std::string err;
};

struct process {
    pid_t pid = -1;
    int stdin_fd = -1;
    std::string err_path;

    // Starts the writer; stdin from `input_path`, or a pipe when it is empty.
    process(const std::vector<std::string>& args, const std::string& input_path, const std::string& err_file,
            std::vector<std::string> env = {})
        : err_path(err_file)
    {
        int p[2] = {-1, -1};
        if (input_path.empty())
            REQUIRE(pipe(p) == 0);
        pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            int in = input_path.empty() ? p[0] : open(input_path.c_str(), O_RDONLY);
            dup2(in, 0);
            if (input_path.empty())
                close(p[1]);
            int e = open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(e, 2);
            for (auto& kv : env)
                putenv(kv.data());
            std::vector<char*> argv{const_cast<char*>(MS_CH_WRITER)};
            for (auto& a : args)
                argv.push_back(const_cast<char*>(a.c_str()));
            argv.push_back(nullptr);
            execv(argv[0], argv.data());
            _exit(127);
        }
        if (input_path.empty()) {
            close(p[0]);
            stdin_fd = p[1];
        }
    }
    ~process()
    {
        if (stdin_fd >= 0)
            close(stdin_fd);
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
    }
    void write_input(const std::string& bytes)
    {
        std::size_t off = 0;
        while (off < bytes.size()) {
            ssize_t n = write(stdin_fd, bytes.data() + off, bytes.size() - off);
            REQUIRE(n > 0);
            off += std::size_t(n);
        }
    }
    run_result wait_exit()
    {
        if (stdin_fd >= 0) {
            close(stdin_fd);
            stdin_fd = -1;
        }
        int status = 0;
        waitpid(pid, &status, 0);
        pid = -1;
        run_result r;
        r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        std::ifstream in(err_path);
        std::stringstream s;
        s << in.rdbuf();
        r.err = s.str();
        return r;
    }
};

run_result run(const std::vector<std::string>& args, const std::string& input, const temp_dir& dir,
               std::vector<std::string> env = {})
{
    process p(args, input, (dir.path() / "stderr.txt").string(), std::move(env));
    return p.wait_exit();
}

std::size_t spooled_batches(const std::filesystem::path& spool)
{
    std::size_t n = 0;
    if (std::filesystem::exists(spool))
        for (const auto& e : std::filesystem::directory_iterator(spool))
            n += e.path().extension() == ".batch";
    return n;
}

} // namespace

TEST_CASE("--help documents the flags and the exit codes, and exits 0")
{
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execl(MS_CH_WRITER, MS_CH_WRITER, "--help", nullptr);
        _exit(127);
    }
    close(fds[1]);
    std::string text;
    char buf[4096];
    for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;)
        text.append(buf, std::size_t(n));
    close(fds[0]);
    int status = -1;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    for (const char* flag : {"--clickhouse-url", "--spool-dir", "--spool-max-bytes", "--batch-rows", "--batch-bytes",
                             "--flush-interval", "--host", "--password-file", "CLICKHOUSE_PASSWORD", "Exit codes"})
        CHECK_MESSAGE(text.find(flag) != std::string::npos, flag);
}

TEST_CASE("a capture is written to all tables: raw samples with the capture's host, rollup rows summing to the samples")
{
    fresh_schema();
    temp_dir dir;
    auto cap = capture_bytes::with_samples("cap-host", 3000);
    auto path = dir.write("in.cap", cap.s).string();
    auto r = run({"--clickhouse-url", server().url(), "--spool-dir", (dir.path() / "spool").string(), "--batch-rows", "1000", path},
                 "", dir);
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(number("SELECT count() FROM ms_raw_samples WHERE host = 'cap-host'") == 3000);
    CHECK(number("SELECT uniqExact(ip) FROM ms_raw_samples") == 3000);
    CHECK(number("SELECT sum(samples) FROM ms_flow_rollup WHERE host = 'cap-host'") == 3000);
    CHECK(r.err.find("ms_raw_samples lacks column(s) direction") != std::string::npos);
}

TEST_CASE("a malformed capture: a clear error naming the byte offset, exit 2, samples before it still written")
{
    fresh_schema();
    temp_dir dir;
    auto cap = capture_bytes::with_samples("cap-host", 10);
    const std::size_t bad_offset = cap.s.size();
    cap.le(std::uint32_t(9)).le(std::uint32_t(4)).le(std::uint32_t(0)); // frame type 9 does not exist
    auto path = dir.write("bad.cap", cap.s).string();
    auto r = run({"--clickhouse-url", server().url(), "--spool-dir", (dir.path() / "spool").string(), "--host", "other", path},
                 "", dir);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("offset " + std::to_string(bad_offset)) != std::string::npos);
    CHECK(r.err.find("unknown frame type 9") != std::string::npos);
    CHECK(number("SELECT count() FROM ms_raw_samples WHERE host = 'other'") == 10);

    auto truncated = dir.write("short.cap", capture_bytes::header("h").s.substr(0, 20)).string();
    auto r2 = run({"--clickhouse-url", server().url(), "--spool-dir", (dir.path() / "spool").string(), truncated}, "", dir);
    CHECK(r2.exit_code == 2);
    CHECK(r2.err.find("offset") != std::string::npos);
}

TEST_CASE("a wrong URL or wrong credentials: a clear error, exit 3, the spool keeps the rows for the next run")
{
    fresh_schema();
    temp_dir dir;
    auto cap = capture_bytes::with_samples("cap-host", 1500);
    auto path = dir.write("in.cap", cap.s).string();
    auto spool = (dir.path() / "spool").string();

    auto bad_url = run({"--clickhouse-url", "http://127.0.0.1:1/", "--spool-dir", spool, "--batch-rows", "1000",
                        "--drain-timeout", "200", path},
                       "", dir);
    INFO(bad_url.err);
    CHECK(bad_url.exit_code == 3);
    CHECK(bad_url.err.find("cannot connect to ClickHouse at http://127.0.0.1:1/") != std::string::npos);
    CHECK(spooled_batches(spool) >= 2);

    std::string user = std::string("CLICKHOUSE_USER=") + clickhouse_server::test_user;
    auto bad_password = run({"--clickhouse-url", server().url(), "--spool-dir", spool, "--drain-timeout", "200", path}, "", dir,
                            {user, "CLICKHOUSE_PASSWORD=wrong"});
    INFO(bad_password.err);
    CHECK(bad_password.exit_code == 3);
    CHECK(bad_password.err.find("rejected user 'ms_test'") != std::string::npos);
    CHECK(number("SELECT count() FROM ms_raw_samples") == 0);

    auto empty = dir.write("empty.cap", capture_bytes::header("cap-host").s).string();
    auto good = run({"--clickhouse-url", server().url(), "--spool-dir", spool, empty}, "", dir,
                    {user, std::string("CLICKHOUSE_PASSWORD=") + clickhouse_server::test_password});
    INFO(good.err);
    CHECK(good.exit_code == 0);
    CHECK(number("SELECT count() FROM ms_raw_samples") == 3000); // the capture was read twice, both runs spooled it
    CHECK(number("SELECT uniqExact(ip) FROM ms_raw_samples") == 1500);
    CHECK(spooled_batches(spool) == 0);
}

TEST_CASE("the writer killed with -9 while batches wait in its spool: the next run replays them")
{
    fresh_schema();
    temp_dir dir;
    auto spool = (dir.path() / "spool").string();
    {
        process p({"--clickhouse-url", "http://127.0.0.1:1/", "--spool-dir", spool, "--batch-rows", "500",
                   "--flush-interval", "50"},
                  "", (dir.path() / "e1").string());
        auto cap = capture_bytes::with_samples("cap-host", 2000);
        p.write_input(cap.s); // the pipe stays open: the writer is mid-stream when killed
        auto deadline = std::chrono::steady_clock::now() + 30s;
        while (spooled_batches(spool) < 4 && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(20ms);
        REQUIRE(spooled_batches(spool) == 4);
        kill(p.pid, SIGKILL);
    }
    auto empty = dir.write("empty.cap", capture_bytes::header("cap-host").s).string();
    auto r = run({"--clickhouse-url", server().url(), "--spool-dir", spool, empty}, "", dir);
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.err.find("replaying 4 spooled batches") != std::string::npos);
    CHECK(number("SELECT count() FROM ms_raw_samples") == 2000);
    CHECK(number("SELECT uniqExact(ip) FROM ms_raw_samples") == 2000);
}

TEST_CASE("https with --ca-file: rows arrive over TLS; without the CA the certificate is refused and the rows stay spooled")
{
    clickhouse_server tls_server(clickhouse_server::options{.tls = true});
    tls_server.query("CREATE TABLE ms_raw_samples (ts DateTime, host String, ip UInt64) ENGINE = MergeTree ORDER BY ip");
    temp_dir dir;
    auto cap = capture_bytes::with_samples("tls-host", 100);
    auto path = dir.write("in.cap", cap.s).string();
    auto spool = (dir.path() / "spool").string();

    auto refused = run({"--clickhouse-url", tls_server.https_url(), "--spool-dir", spool, "--drain-timeout", "200", path}, "", dir);
    INFO(refused.err);
    CHECK(refused.exit_code == 3);
    CHECK(refused.err.find("TLS with ClickHouse") != std::string::npos);

    auto empty = dir.write("empty.cap", capture_bytes::header("tls-host").s).string();
    auto ok = run({"--clickhouse-url", tls_server.https_url(), "--ca-file", tls_server.ca_file(), "--spool-dir", spool, empty},
                  "", dir);
    INFO(ok.err);
    CHECK(ok.exit_code == 4); // ms_flow_rollup does not exist on this server: its rows are dropped and counted
    CHECK(ok.err.find("ms_flow_rollup does not exist") != std::string::npos);
    CHECK(microsentinel::testing::query_number(tls_server, "SELECT count() FROM ms_raw_samples WHERE host = 'tls-host'") == 100);
}

TEST_CASE("--data-objects on: data addresses resolve through /proc, objects land in ms_data_objects, ids in the rows")
{
    fresh_schema();
    server().query("CREATE TABLE ms_data_objects (object_id UInt64, host String, mapping String, base UInt64, size UInt64, "
                   "permissions String) ENGINE = ReplacingMergeTree ORDER BY (host, object_id)");
    // Page faults of this (live) test process on its own heap.
    std::vector<char> heap(1 << 20, 'x');
    const auto addr = reinterpret_cast<std::uint64_t>(heap.data()) + 4096;
    const auto pid = std::uint32_t(getpid());
    temp_dir dir;
    auto cap = capture_bytes::header("objects-host");
    for (std::uint64_t i = 0; i < 10; ++i)
        cap.sample(i, pid, addr + i * 64);
    auto path = dir.write("in.cap", cap.s).string();
    auto r = run({"--clickhouse-url", server().url(), "--spool-dir", (dir.path() / "spool").string(), "--data-objects", "on", path},
                 "", dir);
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(number("SELECT count() FROM ms_raw_samples WHERE data_object_id != 0") == 10);
    CHECK(number("SELECT uniqExact(data_object_id) FROM ms_raw_samples") == 1);
    CHECK(number("SELECT count() FROM ms_data_objects FINAL WHERE object_id IN (SELECT data_object_id FROM ms_raw_samples) AND base <= " +
                 std::to_string(addr) + " AND base + size > " + std::to_string(addr)) == 1);
    CHECK(number("SELECT sum(samples) FROM ms_flow_rollup WHERE data_object_id != 0") == 10);
}

TEST_CASE("SIGTERM while reading a live pipe: what was read is delivered and the exit code says so")
{
    fresh_schema();
    temp_dir dir;
    process p({"--clickhouse-url", server().url(), "--spool-dir", (dir.path() / "spool").string(), "--flush-interval", "50"}, "",
              (dir.path() / "e").string());
    auto cap = capture_bytes::with_samples("cap-host", 300);
    capture_bytes next;
    next.sample(300);
    p.write_input(cap.s + next.s.substr(0, 108)); // ends inside a frame; the pipe stays open
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (number("SELECT count() FROM ms_raw_samples") < 300 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(20ms);
    REQUIRE(number("SELECT count() FROM ms_raw_samples") == 300); // the flush interval sent them while the input idled
    kill(p.pid, SIGTERM);
    auto r = p.wait_exit();
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.err.find("stopped by a signal") != std::string::npos);
    CHECK(number("SELECT count() FROM ms_raw_samples") == 300);
    CHECK(number("SELECT sum(samples) FROM ms_flow_rollup") == 300);
}
