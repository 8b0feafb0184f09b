// The HTTP client against a current engine (chDB 26.x behind the HTTP
// interface): today's error format, RowBinary inserts and deduplication tokens.
#include <doctest/doctest.h>

#include <microsentinel/clickhouse/http.hpp>

#include <cstdint>
#include <string>

#include "chdb_server.hpp"
#include "writer_fixtures.hpp"

namespace ch = microsentinel::clickhouse;
using microsentinel::testing::chdb_server;

namespace {

chdb_server& server() { return microsentinel::testing::shared_server<chdb_server>(); }

// RowBinary rows of (k UInt64, s String), written field by field.
std::string rowbinary(std::initializer_list<std::pair<std::uint64_t, std::string>> rows)
{
    microsentinel::testing::le_bytes out;
    for (const auto& [k, s] : rows)
        out.le(k).str(s);
    return out.s;
}

} // namespace

TEST_CASE("a current server's errors carry their code and classify like 18.16's")
{
    ch::client c(server().url());
    ch::response missing_table = c.post("SELECT * FROM no_such_table");
    CHECK(missing_table.exception_code == 60);
    CHECK(ch::classify(missing_table) == ch::failure::schema);
    CHECK(missing_table.message().rfind("Code: 60.", 0) == 0);

    server().query("CREATE TABLE IF NOT EXISTS cols (k UInt64) ENGINE = MergeTree ORDER BY k");
    ch::response missing_column = c.post("INSERT INTO cols (k, direction) FORMAT TSV", "1\t0\n");
    CHECK(missing_column.exception_code == 16);
    CHECK(ch::classify(missing_column) == ch::failure::schema);

    ch::response bad_rows = c.post("INSERT INTO cols FORMAT TSV", "not a number\n");
    CHECK(bad_rows.exception_code != 0);
    CHECK(ch::classify(bad_rows) == ch::failure::rejected);
}

TEST_CASE("RowBinary batches with the same deduplication token are stored once, gzipped or not")
{
    server().query("CREATE TABLE IF NOT EXISTS dedup (k UInt64, s String) ENGINE = MergeTree ORDER BY k "
                   "SETTINGS non_replicated_deduplication_window = 100");
    server().query("TRUNCATE TABLE dedup");
    std::string batch = rowbinary({{1, "one"}, {2, "two"}});

    ch::client_options o;
    SUBCASE("plain") {}
    SUBCASE("gzip") { o.compress = true; }
    ch::client c(server().url(), o);
    for (int attempt = 0; attempt < 2; ++attempt)
        c.execute("INSERT INTO dedup (k, s) FORMAT RowBinary", batch, {{"insert_deduplication_token", "batch-1"}});
    c.execute("INSERT INTO dedup (k, s) FORMAT RowBinary", rowbinary({{3, "three"}}), {{"insert_deduplication_token", "batch-2"}});

    CHECK(server().query("SELECT count(), sum(k), arrayStringConcat(groupArray(s), ',') FROM (SELECT * FROM dedup ORDER BY k)") ==
          "3\t6\tone,two,three\n");
}

TEST_CASE("the chDB server keeps its data across kill -9 and comes back on the same port")
{
    server().query("CREATE TABLE IF NOT EXISTS durable (k UInt64) ENGINE = MergeTree ORDER BY k");
    server().query("TRUNCATE TABLE durable");
    ch::client c(server().url());
    c.execute("INSERT INTO durable FORMAT TSV", "1\n2\n3\n");
    std::uint16_t port = server().http_port();

    server().kill();
    CHECK_THROWS_AS(c.post("SELECT 1"), ch::transport_error);
    server().start();
    CHECK(server().http_port() == port);
    CHECK(c.execute("SELECT count() FROM durable") == "3\n");
}
