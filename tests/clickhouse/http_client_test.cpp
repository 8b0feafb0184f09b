// The HTTP client against a real clickhouse-server started by the test.
#include <doctest/doctest.h>

#include <microsentinel/clickhouse/http.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <unistd.h>
#include <vector>

#include "clickhouse_server.hpp"
#include "writer_fixtures.hpp"

namespace ch = microsentinel::clickhouse;
using microsentinel::testing::clickhouse_server;

namespace {

clickhouse_server& server() { return microsentinel::testing::shared_server<clickhouse_server>(); }

struct env_guard {
    explicit env_guard(std::initializer_list<const char*> names)
    {
        for (const char* n : names) {
            const char* v = std::getenv(n);
            saved.emplace_back(n, v ? std::optional<std::string>(v) : std::nullopt);
            unsetenv(n);
        }
    }
    ~env_guard()
    {
        for (auto& [n, v] : saved) {
            if (v)
                setenv(n.c_str(), v->c_str(), 1);
            else
                unsetenv(n.c_str());
        }
    }
    std::vector<std::pair<std::string, std::optional<std::string>>> saved;
};

struct temp_file {
    explicit temp_file(const std::string& content)
    {
        char name[] = "/tmp/ms-password-XXXXXX";
        int fd = mkstemp(name);
        REQUIRE(fd >= 0);
        close(fd);
        path = name;
        std::ofstream(path) << content;
    }
    ~temp_file() { std::filesystem::remove(path); }
    std::string path;
};

} // namespace

TEST_CASE("a query returns the server's answer over one kept-alive connection")
{
    ch::client c(server().url());
    CHECK(c.execute("SELECT 1 + 2") == "3\n");
    CHECK(c.execute("SELECT 'a' FORMAT TSV") == "a\n");
    CHECK(c.execute("SELECT version()").rfind("18.", 0) == 0);
    CHECK(c.connections_opened() == 1);
}

TEST_CASE("rows sent as the body of an INSERT arrive, gzipped or not")
{
    server().query("CREATE TABLE IF NOT EXISTS http_rows (k UInt64, s String) ENGINE = MergeTree() ORDER BY k");
    server().query("TRUNCATE TABLE http_rows");

    SUBCASE("plain")
    {
        ch::client c(server().url());
        c.execute("INSERT INTO http_rows FORMAT TSV", "1\tone\n2\ttwo\n");
    }
    SUBCASE("gzip")
    {
        ch::client_options o;
        o.compress = true;
        ch::client c(server().url(), o);
        c.execute("INSERT INTO http_rows FORMAT TSV", "1\tone\n2\ttwo\n");
        c.execute("SELECT 1"); // a query in the body is gzipped too
    }
    CHECK(server().query("SELECT count(), sum(k), groupArray(s) FROM (SELECT * FROM http_rows ORDER BY k)") ==
          "2\t3\t['one','two']\n");
}

TEST_CASE("settings travel in the URL")
{
    ch::client c(server().url());
    CHECK(c.execute("SELECT value FROM system.settings WHERE name = 'max_threads'", {}, {{"max_threads", "3"}}) == "3\n");
}

TEST_CASE("server errors carry the ClickHouse code and say what to do")
{
    ch::client c(server().url());

    SUBCASE("a missing table is a schema failure that names the migrations")
    {
        ch::response r = c.post("SELECT * FROM no_such_table");
        CHECK(r.status == 404);
        CHECK(r.exception_code == 60);
        CHECK(ch::classify(r) == ch::failure::schema);
        CHECK_THROWS_WITH_AS(c.execute("SELECT * FROM no_such_table"),
                             doctest::Contains("micro_sentinel_migrate"), ch::server_error);
    }
    SUBCASE("a missing column is a schema failure although the server says 500")
    {
        server().query("CREATE TABLE IF NOT EXISTS http_cols (k UInt64) ENGINE = MergeTree() ORDER BY k");
        ch::response r = c.post("INSERT INTO http_cols (k, direction) FORMAT TSV", "1\t0\n");
        CHECK(r.exception_code == 16);
        CHECK(ch::classify(r) == ch::failure::schema);
    }
    SUBCASE("unparsable rows are rejected, not retried, although the server says 500")
    {
        server().query("CREATE TABLE IF NOT EXISTS http_cols (k UInt64) ENGINE = MergeTree() ORDER BY k");
        ch::response r = c.post("INSERT INTO http_cols FORMAT TSV", "not a number\n");
        CHECK(r.exception_code != 0);
        CHECK(ch::classify(r) == ch::failure::rejected);
        CHECK(r.message().find("Code: ") == 0);
        CHECK(r.message().find('\n') == std::string::npos);
    }
}

TEST_CASE("credentials come from the environment or a file, and wrong ones name the fix")
{
    env_guard guard{"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_PASSWORD_FILE"};
    ch::client_options o;

    SUBCASE("right password from the environment")
    {
        setenv("CLICKHOUSE_USER", clickhouse_server::test_user, 1);
        setenv("CLICKHOUSE_PASSWORD", clickhouse_server::test_password, 1);
        o.auth = ch::load_credentials();
        CHECK(o.auth.user == clickhouse_server::test_user);
        CHECK(ch::client(server().url(), o).execute("SELECT 1") == "1\n");
    }
    SUBCASE("a password file wins over the environment")
    {
        temp_file file(std::string(clickhouse_server::test_password) + "\n");
        setenv("CLICKHOUSE_PASSWORD", "wrong", 1);
        o.auth = ch::load_credentials(clickhouse_server::test_user, file.path);
        CHECK(o.auth.password == clickhouse_server::test_password);
        CHECK(ch::client(server().url(), o).execute("SELECT 1") == "1\n");

        setenv("CLICKHOUSE_PASSWORD_FILE", file.path.c_str(), 1);
        CHECK(ch::load_credentials(clickhouse_server::test_user).password == clickhouse_server::test_password);
    }
    SUBCASE("a wrong password is an auth failure naming the user and where credentials come from")
    {
        setenv("CLICKHOUSE_PASSWORD", "wrong", 1);
        o.auth = ch::load_credentials(clickhouse_server::test_user);
        ch::client c(server().url(), o);
        ch::response r = c.post("SELECT 1");
        CHECK(r.status == 401);
        CHECK(ch::classify(r) == ch::failure::auth);
        try {
            c.execute("SELECT 1");
            FAIL("expected a server_error");
        } catch (const ch::server_error& e) {
            CHECK(e.kind() == ch::failure::auth);
            CHECK(std::string(e.what()).find("rejected user 'ms_test'") != std::string::npos);
            CHECK(std::string(e.what()).find("CLICKHOUSE_PASSWORD") != std::string::npos);
        }
    }
    SUBCASE("an unreadable password file is a clear error")
    {
        CHECK_THROWS_WITH_AS(ch::load_credentials("u", "/nonexistent/password"),
                             doctest::Contains("/nonexistent/password"), ch::config_error);
    }
    SUBCASE("a password in the URL is refused")
    {
        CHECK_THROWS_WITH_AS(ch::client("http://u:secret@127.0.0.1:1/"), doctest::Contains("CLICKHOUSE_PASSWORD"),
                             ch::config_error);
    }
}

TEST_CASE("a server that is not there gives a transport error naming the URL")
{
    // Stopping the server leaves nothing listening on its HTTP port.
    clickhouse_server& s = server();
    std::string url = "http://127.0.0.1:" + std::to_string(s.http_port()) + "/";
    s.kill();
    ch::client_options o;
    o.connect_timeout = std::chrono::seconds(2);
    ch::client c(url, o);
    try {
        c.post("SELECT 1");
        FAIL("expected a transport_error");
    } catch (const ch::transport_error& e) {
        CHECK(e.what_kind() == ch::transport_error::kind::connect);
        CHECK(std::string(e.what()).find(url) != std::string::npos);
        CHECK(std::string(e.what()).find("running") != std::string::npos);
    }
    s.start();
    CHECK(c.execute("SELECT 1") == "1\n");
}

TEST_CASE("a request that outlives its timeout is a timeout error")
{
    ch::client_options o;
    o.timeout = std::chrono::milliseconds(300);
    ch::client c(server().url(), o);
    try {
        c.post("SELECT sleep(3)");
        FAIL("expected a transport_error");
    } catch (const ch::transport_error& e) {
        CHECK(e.what_kind() == ch::transport_error::kind::timeout);
        CHECK(std::string(e.what()).find("did not answer in time") != std::string::npos);
    }
}

TEST_CASE("the server keeps its data across kill -9 and a restart on the same ports")
{
    clickhouse_server& s = server();
    s.query("CREATE TABLE IF NOT EXISTS http_durable (k UInt64) ENGINE = MergeTree() ORDER BY k");
    s.query("TRUNCATE TABLE http_durable");
    ch::client c(s.url());
    c.execute("INSERT INTO http_durable FORMAT TSV", "1\n2\n3\n");
    std::uint16_t port = s.http_port();

    s.kill();
    CHECK_FALSE(s.running());
    CHECK_THROWS_AS(c.post("SELECT 1"), ch::transport_error);

    s.start();
    CHECK(s.http_port() == port);
    CHECK(c.execute("SELECT count() FROM http_durable") == "3\n");
}

TEST_CASE("HTTPS: the server's CA verifies it; without that CA the error names TLS")
{
    clickhouse_server s(clickhouse_server::options{.tls = true});
    ch::client_options o;

    SUBCASE("with the CA")
    {
        o.tls.ca_file = s.ca_file();
        ch::client c(s.https_url(), o);
        CHECK(c.execute("SELECT 42") == "42\n");
    }
    SUBCASE("with only the system's CAs")
    {
        ch::client c(s.https_url(), o);
        try {
            c.post("SELECT 1");
            FAIL("expected a transport_error");
        } catch (const ch::transport_error& e) {
            CHECK(e.what_kind() == ch::transport_error::kind::tls);
            CHECK(std::string(e.what()).find("CA file") != std::string::npos);
        }
    }
    SUBCASE("verification off accepts it, for test setups only")
    {
        o.tls.verify = false;
        CHECK(ch::client(s.https_url(), o).execute("SELECT 1") == "1\n");
    }
}
