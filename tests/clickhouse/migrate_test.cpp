// micro_sentinel_migrate: its SQL handling, and the binary against Debian's
// clickhouse-server 18.16 (too old: a clear refusal) and against a current
// engine (chDB behind the HTTP interface: the real apply path).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "chdb_server.hpp"
#include "clickhouse_server.hpp"
#include "migrations.hpp"
#include "run_program.hpp"
#include "sql_script.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace mg = microsentinel::migrate;
using microsentinel::testing::program_result;
using microsentinel::testing::run_program;
using microsentinel::testing::temp_dir;

namespace {

const std::string migrate_bin = MICROSENTINEL_MIGRATE_BIN;
const std::string migrations_dir = MICROSENTINEL_MIGRATIONS_DIR;

program_result migrate(const std::vector<std::string>& args,
                       const std::vector<std::pair<std::string, std::string>>& env = {})
{
    std::vector<std::string> argv{migrate_bin};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_program(argv, env);
}

bool contains(const std::string& haystack, const std::string& needle)
{
    return haystack.find(needle) != std::string::npos;
}

} // namespace

TEST_CASE("statements split on semicolons outside strings, identifiers and comments")
{
    auto s = mg::split_statements("-- header; not a statement\n"
                                  "CREATE TABLE a (x String DEFAULT 'a;b') ENGINE = Memory;\n"
                                  "/* block; comment */ ALTER TABLE `we;ird` ADD COLUMN y String DEFAULT 'it''s; \\'ok\\'';\n"
                                  "SELECT \"q;q\" -- trailing; comment\n"
                                  ";;\n"
                                  "SELECT 1");
    REQUIRE(s.size() == 4);
    CHECK(s[0] == "CREATE TABLE a (x String DEFAULT 'a;b') ENGINE = Memory");
    CHECK(s[1] == "ALTER TABLE `we;ird` ADD COLUMN y String DEFAULT 'it''s; \\'ok\\''");
    CHECK(s[2] == "SELECT \"q;q\"");
    CHECK(s[3] == "SELECT 1");

    CHECK(mg::split_statements("-- only a comment\n  \n").empty());
    CHECK_THROWS_WITH_AS(mg::split_statements("SELECT 1;\nSELECT 'open"), doctest::Contains("line 2"), mg::sql_error);
    CHECK_THROWS_WITH_AS(mg::split_statements("/* open"), doctest::Contains("line 1"), mg::sql_error);
}

TEST_CASE("for a cluster, DDL gets ON CLUSTER after its object name")
{
    CHECK(mg::for_cluster("CREATE TABLE IF NOT EXISTS db.t (x UInt8) ENGINE = Memory", "prod") ==
          "CREATE TABLE IF NOT EXISTS db.t ON CLUSTER 'prod' (x UInt8) ENGINE = Memory");
    CHECK(mg::for_cluster("alter table `my t` ADD COLUMN IF NOT EXISTS d UInt8 DEFAULT 0", "prod") ==
          "alter table `my t` ON CLUSTER 'prod' ADD COLUMN IF NOT EXISTS d UInt8 DEFAULT 0");
    CHECK(mg::for_cluster("CREATE TABLE t\n(x UInt8)", "c1") == "CREATE TABLE t ON CLUSTER 'c1'\n(x UInt8)");
    CHECK(mg::for_cluster("DROP TABLE IF EXISTS t", "c1") == "DROP TABLE IF EXISTS t ON CLUSTER 'c1'");

    SUBCASE("the cluster files' macro becomes the name")
    {
        CHECK(mg::for_cluster("ALTER TABLE t ON CLUSTER '{cluster}' ADD COLUMN d UInt8", "prod") ==
              "ALTER TABLE t ON CLUSTER 'prod' ADD COLUMN d UInt8");
    }
    SUBCASE("an explicit ON CLUSTER and non-DDL stay as written")
    {
        CHECK(mg::for_cluster("ALTER TABLE t ON CLUSTER other ADD COLUMN d UInt8", "prod") ==
              "ALTER TABLE t ON CLUSTER other ADD COLUMN d UInt8");
        CHECK(mg::for_cluster("INSERT INTO t VALUES (1)", "prod") == "INSERT INTO t VALUES (1)");
        CHECK(mg::for_cluster("CREATE TABLE t (s String DEFAULT 'on cluster') ENGINE = Memory", "p") ==
              "CREATE TABLE t ON CLUSTER 'p' (s String DEFAULT 'on cluster') ENGINE = Memory");
    }
    SUBCASE("what it cannot place is an error, not a local statement")
    {
        CHECK_THROWS_AS(mg::for_cluster("RENAME TABLE a TO b", "prod"), mg::sql_error);
        CHECK_THROWS_AS(mg::for_cluster("CREATE TABLE t (x UInt8)", "bad name'"), mg::sql_error);
    }
}

TEST_CASE("migrations load in file-name order with a checksum of their bytes")
{
    temp_dir d;
    d.write("202501_second.sql", "SELECT 2;");
    d.write("0001_first.sql", "SELECT 1; SELECT 11;");
    d.write("notes.txt", "not a migration");
    auto all = mg::load_migrations(d.path());
    REQUIRE(all.size() == 2);
    CHECK(all[0].name == "0001_first.sql");
    CHECK(all[0].statements == std::vector<std::string>{"SELECT 1", "SELECT 11"});
    CHECK(all[1].name == "202501_second.sql");
    CHECK(all[0].checksum == mg::checksum_of("SELECT 1; SELECT 11;"));
    CHECK(all[0].checksum != all[1].checksum);

    CHECK_THROWS_WITH_AS(mg::load_migrations(d.path() / "missing"), doctest::Contains("--migrations"), mg::sql_error);
}

TEST_CASE("the repository's migrations: two files, every cluster statement ON CLUSTER")
{
    auto plain = mg::load_migrations(migrations_dir);
    REQUIRE(plain.size() == 2);
    CHECK(plain[0].name == "0001_baseline.sql");
    CHECK(plain[1].name == "202501_direction_and_data_objects.sql");
    CHECK(plain[1].statements.size() == 3);

    auto cluster = mg::load_migrations(fs::path(migrations_dir) / "cluster", "prod");
    REQUIRE(cluster.size() == 2);
    for (const auto& m : cluster)
        for (const auto& s : m.statements) {
            CHECK(contains(s, "ON CLUSTER 'prod'"));
            CHECK_FALSE(contains(s, "{cluster}"));
        }
}

TEST_CASE("--help describes every option")
{
    auto r = migrate({"--help"});
    CHECK(r.exit_code == 0);
    for (const char* option : {"--clickhouse-url", "--migrations", "--cluster", "--dry-run", "--database", "--user",
                               "--password-file", "--ca-file", "--cert", "--key", "--insecure", "--timeout"})
        CHECK_MESSAGE(contains(r.out, option), option);
    auto bad = migrate({"--bogus"});
    CHECK(bad.exit_code == 2);
    CHECK(contains(bad.err, "--bogus"));
}

TEST_CASE("against ClickHouse 18.16 the runner refuses with the version it needs and changes nothing")
{
    microsentinel::testing::clickhouse_server server;
    const std::vector<std::pair<std::string, std::string>> no_credentials{
        {"CLICKHOUSE_USER", ""}, {"CLICKHOUSE_PASSWORD", ""}, {"CLICKHOUSE_PASSWORD_FILE", ""}};

    auto r = migrate({"--clickhouse-url", server.url(), "--migrations", migrations_dir}, no_credentials);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "ClickHouse 18.16"));
    CHECK(contains(r.err, "22 or later"));
    CHECK(server.query("SELECT count() FROM system.tables WHERE database = currentDatabase()") == "0\n");

    SUBCASE("a dry run still prints the plan, in order, with a warning")
    {
        auto plan = migrate({"--clickhouse-url", server.url(), "--migrations", migrations_dir, "--dry-run"}, no_credentials);
        CHECK(plan.exit_code == 0);
        CHECK(contains(plan.err, "too old"));
        auto first = plan.out.find("pending  0001_baseline.sql (3 statements)");
        auto second = plan.out.find("pending  202501_direction_and_data_objects.sql (3 statements)");
        CHECK(first != std::string::npos);
        CHECK(second != std::string::npos);
        CHECK(first < second);
        CHECK(contains(plan.out, "ADD COLUMN IF NOT EXISTS direction UInt8 DEFAULT 0;"));
        CHECK(contains(plan.out, "nothing was changed"));
    }
    SUBCASE("a dry run for a cluster shows ON CLUSTER in every statement of the cluster files")
    {
        auto plan = migrate({"--clickhouse-url", server.url(), "--dry-run", "--cluster", "prod",
                             "--migrations", (fs::path(migrations_dir) / "cluster").string()},
                            no_credentials);
        CHECK(plan.exit_code == 0);
        CHECK(contains(plan.out, "ALTER TABLE ms_raw_samples_local ON CLUSTER 'prod' ADD COLUMN IF NOT EXISTS direction"));
        CHECK(contains(plan.out, "Distributed('prod', currentDatabase(), ms_data_objects_local, cityHash64(host))"));
    }
    SUBCASE("a password file authenticates: the refusal is then about the version")
    {
        temp_dir d;
        d.write("password", std::string(microsentinel::testing::clickhouse_server::test_password) + "\n");
        auto r2 = migrate({"--clickhouse-url", server.url(), "--user", microsentinel::testing::clickhouse_server::test_user,
                           "--password-file", (d.path() / "password").string()},
                          {{"CLICKHOUSE_PASSWORD", "wrong"}, {"CLICKHOUSE_PASSWORD_FILE", ""}});
        CHECK(r2.exit_code == 1);
        CHECK(contains(r2.err, "too old"));
        CHECK_FALSE(contains(r2.err, "rejected user"));
    }
    SUBCASE("wrong credentials name the user and where credentials come from")
    {
        auto bad = migrate({"--clickhouse-url", server.url(), "--user", microsentinel::testing::clickhouse_server::test_user},
                           {{"CLICKHOUSE_PASSWORD", "wrong"}, {"CLICKHOUSE_PASSWORD_FILE", ""}});
        CHECK(bad.exit_code == 1);
        CHECK(contains(bad.err, "rejected user 'ms_test'"));
        CHECK(contains(bad.err, "CLICKHOUSE_PASSWORD"));
    }
}

TEST_CASE("a server that is not running gives one clear line")
{
    microsentinel::testing::clickhouse_server server;
    std::string url = server.url();
    server.kill();
    auto r = migrate({"--clickhouse-url", url, "--migrations", migrations_dir});
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "cannot connect to ClickHouse at " + url));
    CHECK(contains(r.err, "check that the server is running"));
}

TEST_CASE("on a current engine the runner applies each file once and shows the guide's tables")
{
    microsentinel::testing::chdb_server server;
    temp_dir baseline_only;
    fs::copy_file(fs::path(migrations_dir) / "0001_baseline.sql", baseline_only.path() / "0001_baseline.sql");

    auto first = migrate({"--clickhouse-url", server.url(), "--migrations", baseline_only.path().string()});
    REQUIRE_MESSAGE(first.exit_code == 0, first.err);
    CHECK(contains(first.out, "applied 0001_baseline.sql (3 statements)"));
    CHECK(contains(first.out, "DESCRIBE TABLE ms_data_objects"));
    CHECK(server.query("SELECT count() FROM system.columns WHERE table = 'ms_raw_samples' AND name = 'direction'") == "0\n");

    // Rows of the previous release, written before the migration.
    server.query("INSERT INTO ms_raw_samples (ts, host, flow_id) VALUES ('2025-01-01 00:00:00', 'old', 1), "
                 "('2025-01-01 00:00:01', 'old', 2)");
    server.query("INSERT INTO ms_flow_rollup (window_start, host, flow_id, samples) VALUES ('2025-01-01 00:00:00', 'old', 1, 5)");

    auto second = migrate({"--clickhouse-url", server.url(), "--migrations", migrations_dir});
    REQUIRE_MESSAGE(second.exit_code == 0, second.err);
    CHECK(contains(second.out, "1 applied, 1 pending"));
    CHECK_FALSE(contains(second.out, "applied 0001_baseline.sql"));
    CHECK(contains(second.out, "applied 202501_direction_and_data_objects.sql (3 statements)"));
    CHECK(contains(second.out, "│ direction       │ UInt8                  │ DEFAULT      │ 0"));
    CHECK(contains(second.out, "│ permissions │ String"));

    CHECK(server.query("SELECT direction, count() FROM ms_raw_samples GROUP BY direction") == "0\t2\n");
    CHECK(server.query("SELECT direction, samples FROM ms_flow_rollup") == "0\t5\n");
    CHECK(server.query("SELECT name FROM ms_schema_migrations ORDER BY name") ==
          "0001_baseline.sql\n202501_direction_and_data_objects.sql\n");

    SUBCASE("a second run applies nothing")
    {
        auto again = migrate({"--clickhouse-url", server.url(), "--migrations", migrations_dir});
        CHECK(again.exit_code == 0);
        CHECK(contains(again.out, "nothing to apply"));
        CHECK(server.query("SELECT count() FROM ms_schema_migrations") == "2\n");
    }
    SUBCASE("an applied file that was edited is reported, not re-run")
    {
        temp_dir edited;
        fs::copy_file(fs::path(migrations_dir) / "0001_baseline.sql", edited.path() / "0001_baseline.sql");
        fs::copy_file(fs::path(migrations_dir) / "202501_direction_and_data_objects.sql",
                      edited.path() / "202501_direction_and_data_objects.sql");
        std::ofstream(edited.path() / "0001_baseline.sql", std::ios::app) << "\n-- edited\n";
        auto r = migrate({"--clickhouse-url", server.url(), "--migrations", edited.path().string()});
        CHECK(r.exit_code == 0);
        CHECK(contains(r.err, "0001_baseline.sql changed since it was applied"));
    }
    SUBCASE("--database puts the tables there, and a missing database is named")
    {
        auto missing = migrate({"--clickhouse-url", server.url(), "--migrations", migrations_dir, "--database", "telemetry"});
        CHECK(missing.exit_code == 1);
        CHECK(contains(missing.err, "no such database"));
        server.query("CREATE DATABASE telemetry");
        auto r = migrate({"--clickhouse-url", server.url(), "--migrations", migrations_dir, "--database", "telemetry"});
        CHECK(r.exit_code == 0);
        CHECK(contains(r.out, "0 applied, 2 pending"));
        CHECK(server.query("SELECT count() FROM system.tables WHERE database = 'telemetry' AND name LIKE 'ms_%'") == "5\n");
    }
    SUBCASE("a failing statement names the file and the statement and stops")
    {
        temp_dir broken;
        broken.write("0001_baseline.sql", "SELECT 1;");
        broken.write("202501_direction_and_data_objects.sql", "SELECT 1;");
        broken.write("202502_broken.sql", "SELECT 1;\nALTER TABLE no_such_table ADD COLUMN x UInt8;\n");
        broken.write("202503_after.sql", "CREATE TABLE after_broken (x UInt8) ENGINE = Memory;");
        auto r = migrate({"--clickhouse-url", server.url(), "--migrations", broken.path().string()});
        CHECK(r.exit_code == 1);
        CHECK(contains(r.err, "202502_broken.sql, statement 2 of 2 failed"));
        CHECK(contains(r.err, "no_such_table"));
        CHECK(server.query("EXISTS TABLE after_broken") == "0\n");
        CHECK(server.query("SELECT count() FROM ms_schema_migrations WHERE name = '202502_broken.sql'") == "0\n");
    }
}
