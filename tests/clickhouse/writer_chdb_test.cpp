// The writer against a current ClickHouse engine (chDB 26.x behind the HTTP
// interface, support/chdb_server.hpp) with both migrations applied verbatim:
// DateTime64(9) keeps nanoseconds, direction and data objects are written,
// and insert_deduplication_token makes a resent batch count once.
#include <doctest/doctest.h>

#include <microsentinel/clickhouse/writer.hpp>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "chdb_server.hpp"
#include "temp_dir.hpp"
#include "writer_failing_proxy.hpp"
#include "writer_fixtures.hpp"

namespace ch = microsentinel::clickhouse;
using microsentinel::direction;
using microsentinel::sample;
using microsentinel::testing::captured_log;
using microsentinel::testing::chdb_server;
using microsentinel::testing::temp_dir;
using microsentinel::testing::trim;
using namespace std::chrono_literals;

namespace {

chdb_server& server() { return microsentinel::testing::shared_server<chdb_server>(); }

std::uint64_t number(const std::string& sql) { return microsentinel::testing::query_number(server(), sql); }

// Runs a migration file verbatim, statement by statement.
void apply_migration(const std::string& name)
{
    microsentinel::testing::run_sql_file(server(), std::filesystem::path(MS_MIGRATIONS_DIR) / name);
}

// The key (ip) of sample i holds "\n\n" bytes on purpose: RowBinary bodies
// must reach the engine byte for byte, which chDB's inline-data insert did not.
std::uint64_t key(std::uint64_t i) { return 0x0a0a0a0a00000000ull + i; }

sample nth_sample(std::uint64_t i)
{
    sample s{};
    s.tsc = 1'000'000'000 + i * 1001;
    s.cpu = 1;
    s.pid = 100;
    s.tid = 101;
    s.pmu_event = 1;
    s.ip = key(i);
    s.flow_id = 7;
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

ch::writer_options options_for(const std::filesystem::path& spool, captured_log& log)
{
    return microsentinel::testing::test_writer_options({server().url()}, spool, "chdb-host", log);
}

void fresh_tables() { microsentinel::testing::drop_writer_tables(server()); }

} // namespace

TEST_CASE("on a current engine the writer follows the migrations: baseline first, then direction and data objects")
{
    fresh_tables();
    apply_migration("0001_baseline.sql");
    temp_dir spool;
    captured_log log;
    auto o = options_for(spool.path(), log);
    o.schema_refresh = 1ms;
    ch::writer w(o);
    add_samples(w, 0, 1000);
    REQUIRE(w.drain(30s));
    apply_migration("202501_direction_and_data_objects.sql");
    std::this_thread::sleep_for(5ms);
    add_samples(w, 1000, 2000);
    w.add(microsentinel::data_object_row{11, "chdb-host", "[heap]", 0x55550000, 0x21000, "rw-p"});
    microsentinel::flow_rollup_row r{1'700'000'001'000'000'000, 7, direction::tx, 1, 0, 0x401000, 11, 500, 500.0};
    w.add(std::span(&r, 1));
    REQUIRE(w.drain(30s));

    CHECK(number("SELECT count() FROM ms_raw_samples") == 2000);
    // DateTime64(9): the nanoseconds survive (sample 1 is at 1.000001001 s after the offset).
    CHECK(number("SELECT toUnixTimestamp64Nano(ts) FROM ms_raw_samples WHERE ip = " + std::to_string(key(1))) == 1'700'000'001'000'001'001ull);
    CHECK(number("SELECT countIf(direction = 1) FROM ms_raw_samples WHERE ip < " + std::to_string(key(1000))) == 0);
    CHECK(number("SELECT countIf(direction = 1) FROM ms_raw_samples WHERE ip >= " + std::to_string(key(1000))) == 500);
    CHECK(trim(server().query("SELECT mapping FROM ms_data_objects FINAL WHERE object_id = 11")) == "[heap]");
    CHECK(number("SELECT sum(samples) FROM ms_flow_rollup WHERE direction = 1") == 500);
    CHECK(log.count("ms_raw_samples lacks column(s) direction") == 1);
}

TEST_CASE("the same rows in the same batch carry the same insert_deduplication_token: a resend is stored once")
{
    fresh_tables();
    apply_migration("0001_baseline.sql");
    apply_migration("202501_direction_and_data_objects.sql");
    for (int round = 0; round < 2; ++round) {
        temp_dir spool; // a fresh writer each time, as after a crash that lost the acknowledgement
        captured_log log;
        ch::writer w(options_for(spool.path(), log));
        add_samples(w, 0, 3000);
        REQUIRE(w.drain(30s));
        INFO(log.all());
        CHECK(w.stats().rows_sent[0] == 3000);
    }
    CHECK(number("SELECT count() FROM ms_raw_samples") == 3000);
    temp_dir spool;
    captured_log log;
    ch::writer w(options_for(spool.path(), log));
    add_samples(w, 3000, 4000);
    REQUIRE(w.drain(30s));
    CHECK(number("SELECT count() FROM ms_raw_samples") == 4000); // other rows, other token: stored
}

TEST_CASE("an insert that committed but whose answer was lost is retried with the same token and stored once")
{
    fresh_tables();
    apply_migration("0001_baseline.sql");
    apply_migration("202501_direction_and_data_objects.sql");
    microsentinel::testing::failing_proxy proxy(server().http_port());
    temp_dir spool;
    captured_log log;
    ch::writer w([&] {
        auto o = options_for(spool.path(), log);
        o.urls = {proxy.url()};
        return o;
    }());
    add_samples(w, 0, 500); // below a batch: the schema is read through the relay
    proxy.set_losing_answers(true);
    w.flush();
    REQUIRE(proxy.lost_answers() >= 1);
    CHECK(w.pending().size() == 1);
    CHECK(number("SELECT count() FROM ms_raw_samples") == 500); // committed, though the writer never heard so
    proxy.set_losing_answers(false);
    REQUIRE(w.drain(30s));
    CHECK(w.stats().batches_replayed == 1);
    CHECK(number("SELECT count() FROM ms_raw_samples") == 500);
}
