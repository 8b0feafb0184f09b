// The writer against a real clickhouse-server 18.16 started by the test, with
// the pre-migration schema (tests/clickhouse/schema_18_16.sql): schema
// mapping, a migration while it runs, server crashes, 500s, wrong
// credentials, quarantine and failover.
#include <doctest/doctest.h>

#include <microsentinel/clickhouse/writer.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "clickhouse_server.hpp"
#include "temp_dir.hpp"
#include "writer_failing_proxy.hpp"
#include "writer_fixtures.hpp"

namespace ch = microsentinel::clickhouse;
using microsentinel::direction;
using microsentinel::sample;
using microsentinel::testing::captured_log;
using microsentinel::testing::clickhouse_server;
using microsentinel::testing::temp_dir;
using microsentinel::testing::trim;
using namespace std::chrono_literals;

namespace {

clickhouse_server& server() { return microsentinel::testing::shared_server<clickhouse_server>(); }

std::uint64_t number(const std::string& sql) { return microsentinel::testing::query_number(server(), sql); }

void fresh_schema() { microsentinel::testing::fresh_schema(server()); }

// Sample i: ip = i is the key the tests count; every other sample is tx.
sample nth_sample(std::uint64_t i)
{
    sample s{};
    s.tsc = 1'000'000'000 + i * 1000;
    s.cpu = std::uint32_t(i % 2);
    s.pid = 100;
    s.tid = 101;
    s.pmu_event = 1;
    s.ip = i;
    s.flow_id = 7 + i % 5;
    s.gso_segs = 1;
    s.l4_proto = 6;
    s.dir = i % 2 ? direction::tx : direction::rx;
    return s;
}

// Adds samples first .. end-1 to the writer.
void add_samples(ch::writer& w, std::uint64_t first, std::uint64_t end)
{
    for (std::uint64_t i = first; i < end; ++i)
        w.add(nth_sample(i));
}

ch::writer_options options_for(std::vector<std::string> urls, const std::filesystem::path& spool, captured_log& log)
{
    auto o = microsentinel::testing::test_writer_options(std::move(urls), spool, "test-host", log);
    o.client.connect_timeout = 1s;
    o.client.timeout = 10s;
    return o;
}

} // namespace

TEST_CASE("on the pre-migration 18.16 schema rows are written without direction, with one warning per table naming the migration")
{
    fresh_schema();
    temp_dir spool;
    captured_log log;
    ch::writer w(options_for({server().url()}, spool.path(), log));
    add_samples(w, 0, 5000);
    microsentinel::flow_rollup_row r{1'700'000'001'000'000'000, 7, direction::tx, 1, 0, 0x401000, 0, 3, 3.0};
    for (int k = 0; k < 3; ++k)
        w.add(std::span(&r, 1));
    REQUIRE(w.drain(30s));
    CHECK(number("SELECT count() FROM ms_raw_samples") == 5000);
    CHECK(number("SELECT uniqExact(ip) FROM ms_raw_samples") == 5000);
    CHECK(number("SELECT count() FROM ms_raw_samples WHERE host = 'test-host' AND ts = toDateTime(1700000001)") == 5000);
    CHECK(number("SELECT sum(samples) FROM ms_flow_rollup") == 9);
    CHECK(log.count("ms_raw_samples lacks column(s) direction") == 1);
    CHECK(log.count("ms_flow_rollup lacks column(s) direction") == 1);
    CHECK(log.count("migrations/202501_direction_and_data_objects.sql") == 2);
    CHECK(w.stats().batches_sent >= 5);
    CHECK(w.pending().empty());
}

TEST_CASE("data objects for a table the server lacks are counted as dropped and reported; once it exists they arrive")
{
    fresh_schema();
    temp_dir spool;
    captured_log log;
    auto o = options_for({server().url()}, spool.path(), log);
    o.schema_refresh = 1ms;
    ch::writer w(o);
    w.add(microsentinel::data_object_row{1, "test-host", "[heap]", 0x1000, 0x1000, "rw-p"});
    REQUIRE(w.drain(10s));
    CHECK(w.stats().dropped_rows == 1);
    CHECK(log.count("ms_data_objects does not exist") == 1);
    server().query("CREATE TABLE ms_data_objects (object_id UInt64, host String, mapping String, base UInt64, size UInt64, "
                   "permissions String) ENGINE = ReplacingMergeTree ORDER BY (host, object_id)");
    std::this_thread::sleep_for(5ms);
    w.add(microsentinel::data_object_row{2, "test-host", "/usr/lib/libc.so.6", 0x7f00, 0x2000, "r-xp"});
    REQUIRE(w.drain(10s));
    CHECK(trim(server().query("SELECT mapping FROM ms_data_objects WHERE object_id = 2")) == "/usr/lib/libc.so.6");
    CHECK(w.stats().dropped_rows == 1);
}

TEST_CASE("a direction column added by ALTER while the writer runs is filled after the next schema read")
{
    fresh_schema();
    temp_dir spool;
    captured_log log;
    auto o = options_for({server().url()}, spool.path(), log);
    o.schema_refresh = 1ms;
    ch::writer w(o);
    add_samples(w, 0, 1000);
    REQUIRE(w.drain(10s));
    server().query("ALTER TABLE ms_raw_samples ADD COLUMN direction UInt8 DEFAULT 0");
    std::this_thread::sleep_for(5ms);
    add_samples(w, 1000, 2000);
    REQUIRE(w.drain(10s));
    CHECK(number("SELECT count() FROM ms_raw_samples") == 2000);
    // Rows written before the migration read the default, 0 (ingress).
    CHECK(number("SELECT countIf(direction = 1) FROM ms_raw_samples WHERE ip < 1000") == 0);
    CHECK(number("SELECT countIf(direction = 1) FROM ms_raw_samples WHERE ip >= 1000") == 500);
}

TEST_CASE("a column dropped while the writer runs: the insert fails with a schema error, the writer re-reads and re-encodes")
{
    fresh_schema();
    temp_dir spool;
    captured_log log;
    auto o = options_for({server().url()}, spool.path(), log);
    o.schema_refresh = 0ms; // only the schema error can make it notice
    ch::writer w(o);
    add_samples(w, 0, 999); // one row short of a batch: the batch stays open
    server().query("ALTER TABLE ms_raw_samples DROP COLUMN numa_node");
    add_samples(w, 999, 3000);
    REQUIRE(w.drain(10s));
    CHECK(number("SELECT count() FROM ms_raw_samples") == 3000);
    CHECK(number("SELECT uniqExact(ip) FROM ms_raw_samples") == 3000);
    CHECK(w.stats().reencoded_batches >= 1);
    CHECK(log.count("No such column numa_node") >= 1);
}

TEST_CASE("clickhouse-server killed with -9 mid-stream and restarted: every sample arrives, none doubled where the table deduplicates")
{
    fresh_schema();
    // ReplacingMergeTree on the sample key: a batch retried after an
    // ambiguous failure (sent, answer lost) collapses on merge (18.16 has no
    // insert_deduplication_token; retries resend byte-identical batches).
    server().query("DROP TABLE ms_raw_samples");
    server().query("CREATE TABLE ms_raw_samples (ts DateTime, host String, cpu UInt32, pid UInt32, tid UInt32, pmu_event UInt32, "
                   "ip UInt64, data_addr UInt64, flow_id UInt64, gso_segs UInt32, ingress_ifindex UInt16, numa_node UInt16, "
                   "l4_proto UInt8, lbr_nr UInt8, data_object_id UInt64) ENGINE = ReplacingMergeTree ORDER BY (host, ip)");
    temp_dir spool;
    captured_log log;
    ch::writer w(options_for({server().url()}, spool.path(), log));
    const std::uint64_t total = 20000;
    for (std::uint64_t i = 0; i < total; ++i) {
        if (i == 5500)
            server().kill();
        if (i == 15500)
            server().start();
        w.add(nth_sample(i));
        if (i % 500 == 0)
            w.poll();
    }
    REQUIRE(w.drain(60s));
    CHECK(w.stats().batches_spooled > 0);
    CHECK(w.stats().failed_attempts > 0);
    CHECK(number("SELECT uniqExact(ip) FROM ms_raw_samples") == total);
    server().query("OPTIMIZE TABLE ms_raw_samples FINAL");
    CHECK(number("SELECT count() FROM ms_raw_samples FINAL") == total);
    CHECK(number("SELECT min(ip) FROM ms_raw_samples") == 0);
    CHECK(number("SELECT max(ip) FROM ms_raw_samples") == total - 1);
    CHECK(log.count("cannot connect to ClickHouse") >= 1);
}

TEST_CASE("a server answering 500 for a while: batches are spooled and retried in order until it recovers")
{
    fresh_schema();
    microsentinel::testing::failing_proxy proxy(server().http_port());
    temp_dir spool;
    captured_log log;
    ch::writer w(options_for({proxy.url()}, spool.path(), log));
    add_samples(w, 0, 2000);
    w.flush();
    proxy.set_failing(true);
    add_samples(w, 2000, 6000);
    w.flush();
    CHECK(w.pending().size() >= 4);
    CHECK_FALSE(w.drain(300ms));
    CHECK(proxy.failed_requests() >= 2);
    proxy.set_failing(false);
    REQUIRE(w.drain(30s));
    CHECK(number("SELECT count() FROM ms_raw_samples") == 6000);
    CHECK(number("SELECT uniqExact(ip) FROM ms_raw_samples") == 6000);
    CHECK(w.stats().batches_replayed >= 4);
    CHECK(log.count("injected failure by the test proxy") >= 1);
}

TEST_CASE("wrong credentials: a clear error, the spool keeps the rows, and a writer restarted with the right ones delivers them")
{
    fresh_schema();
    temp_dir spool;
    {
        captured_log log;
        auto o = options_for({server().url()}, spool.path(), log);
        o.client.auth = {clickhouse_server::test_user, "wrong-password"};
        ch::writer w(o);
        add_samples(w, 0, 2500);
        CHECK_FALSE(w.drain(300ms));
        CHECK(w.pending().size() == 3);
        CHECK(log.count("rejected user 'ms_test'") >= 1);
        CHECK(log.count("CLICKHOUSE_PASSWORD") >= 1);
    }
    CHECK(number("SELECT count() FROM ms_raw_samples") == 0);
    captured_log log;
    auto o = options_for({server().url()}, spool.path(), log);
    o.client.auth = {clickhouse_server::test_user, clickhouse_server::test_password};
    ch::writer w(o);
    CHECK(log.count("replaying 3 spooled batches") == 1);
    REQUIRE(w.drain(30s));
    CHECK(number("SELECT count() FROM ms_raw_samples") == 2500);
    CHECK(w.stats().batches_replayed == 3);
}

TEST_CASE("a wrong URL: a clear error and the rows stay in the spool")
{
    temp_dir spool;
    captured_log log;
    ch::writer w(options_for({"http://127.0.0.1:1/"}, spool.path(), log));
    add_samples(w, 0, 1500);
    CHECK_FALSE(w.drain(200ms));
    CHECK(w.pending().size() == 2);
    CHECK(log.count("cannot connect to ClickHouse at http://127.0.0.1:1/") >= 1);
}

TEST_CASE("rows the server rejects as invalid go to quarantine with the server's error, and are not retried")
{
    fresh_schema();
    temp_dir spool;
    {
        ch::spool s(spool.path(), 1 << 20);
        ch::batch b;
        b.sequence = s.take_sequence();
        b.table = "ms_raw_samples";
        b.columns = "ip UInt64";
        b.token = "broken";
        b.rows = 2;
        b.payload = std::string(11, '\x01'); // two UInt64 need 16 bytes
        s.push(b);
    }
    captured_log log;
    ch::writer w(options_for({server().url()}, spool.path(), log));
    REQUIRE(w.drain(10s));
    CHECK(w.stats().quarantined_batches == 1);
    CHECK(w.stats().quarantined_rows == 2);
    auto error_file = spool.path() / "quarantine" / "00000000000000000001.error";
    REQUIRE(std::filesystem::exists(error_file));
    std::ifstream in(error_file);
    std::stringstream text;
    text << in.rdbuf();
    CHECK(text.str().find("Cannot read all data") != std::string::npos);
    CHECK(std::filesystem::exists(spool.path() / "quarantine" / "00000000000000000001.batch"));
    CHECK(number("SELECT count() FROM ms_raw_samples") == 0);
}

TEST_CASE("several URLs: batches go round-robin over all of them")
{
    fresh_schema();
    microsentinel::testing::failing_proxy a(server().http_port()), b(server().http_port());
    temp_dir spool;
    captured_log log;
    ch::writer w(options_for({a.url(), b.url()}, spool.path(), log));
    add_samples(w, 0, 4000);
    REQUIRE(w.drain(10s));
    CHECK(number("SELECT count() FROM ms_raw_samples") == 4000);
    CHECK(a.connections() >= 1);
    CHECK(b.connections() >= 1);
    CHECK(w.stats().failovers == 0);
}

TEST_CASE("several URLs: batches go round-robin and fail over past a dead one")
{
    fresh_schema();
    temp_dir spool;
    captured_log log;
    ch::writer w(options_for({"http://127.0.0.1:1/", server().url()}, spool.path(), log));
    add_samples(w, 0, 4000);
    REQUIRE(w.drain(10s));
    CHECK(number("SELECT count() FROM ms_raw_samples") == 4000);
    CHECK(w.stats().failovers >= 1);
    CHECK(w.stats().batches_spooled == 0);
}

TEST_CASE("a full spool blocks the caller (backpressure) instead of dropping; it resumes when the server recovers")
{
    fresh_schema();
    microsentinel::testing::failing_proxy proxy(server().http_port());
    proxy.set_failing(true);
    temp_dir spool;
    captured_log log;
    std::atomic<bool> blocked{false}, finished{false};
    auto o = options_for({proxy.url()}, spool.path(), log);
    o.batch_bytes = 64u << 10;
    o.batch_rows = 100000;
    o.spool_max_bytes = 2 * o.batch_bytes + (1u << 20);
    o.log = [&](std::string_view l) {
        if (l.find("is full") != std::string_view::npos)
            blocked = true;
    };
    ch::writer w(o);
    const std::uint64_t total = 40000; // about 3 MB of rows: more than the spool holds
    std::atomic<bool> unblocked_early{false};
    std::thread producer([&] {
        add_samples(w, 0, total);
        finished = true;
        if (!blocked)
            unblocked_early = true;
    });
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!blocked && !finished && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    CHECK(blocked.load());
    CHECK_FALSE(finished.load()); // the producer is inside add(), waiting for spool space
    proxy.set_failing(false);
    producer.join();
    CHECK_FALSE(unblocked_early.load());
    REQUIRE(w.drain(30s));
    CHECK(w.stats().backpressure_waits >= 1);
    CHECK(w.stats().dropped_rows == 0);
    CHECK(number("SELECT count() FROM ms_raw_samples") == total);
    CHECK(number("SELECT uniqExact(ip) FROM ms_raw_samples") == total);
}

TEST_CASE("a writer destroyed with rows in open batches spools them, and the next writer delivers them")
{
    fresh_schema();
    temp_dir spool;
    {
        captured_log log;
        ch::writer w(options_for({server().url()}, spool.path(), log));
        add_samples(w, 0, 700); // below batch_rows: nothing sent yet
    }
    CHECK(number("SELECT count() FROM ms_raw_samples") == 0);
    captured_log log;
    ch::writer w(options_for({server().url()}, spool.path(), log));
    REQUIRE(w.drain(10s));
    CHECK(number("SELECT count() FROM ms_raw_samples") == 700);
    CHECK(w.stats().batches_replayed == 1);
}

TEST_CASE("18.16 has no insert_deduplication_token: a retry after a lost answer is stored twice in MergeTree and once after ReplacingMergeTree's merge")
{
    fresh_schema();
    server().query("DROP TABLE ms_raw_samples");
    server().query("CREATE TABLE ms_raw_samples (ts DateTime, host String, ip UInt64) ENGINE = ReplacingMergeTree ORDER BY (host, ip)");
    microsentinel::testing::failing_proxy proxy(server().http_port());
    temp_dir spool;
    captured_log log;
    ch::writer w(options_for({proxy.url()}, spool.path(), log));
    add_samples(w, 0, 500);
    proxy.set_losing_answers(true);
    w.flush();
    REQUIRE(proxy.lost_answers() >= 1);
    proxy.set_losing_answers(false);
    REQUIRE(w.drain(30s));
    CHECK(number("SELECT count() FROM ms_raw_samples") == 1000); // the documented 18.16 limitation
    server().query("OPTIMIZE TABLE ms_raw_samples FINAL");
    CHECK(number("SELECT count() FROM ms_raw_samples FINAL") == 500);
}
