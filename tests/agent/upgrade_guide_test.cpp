// The rollout of ../shared/upgrade-guide.md, end to end on this host, with the
// real pieces: migrations applied by micro_sentinel_migrate on a current
// ClickHouse engine (chDB behind the HTTP interface), the previous release's
// collector (v1) loaded, the new agent started against it, the collector
// upgraded to v2 and rolled back to v1 under the running agent, and the
// guide's post-deployment checks: rows in ms_raw_samples, the direction label
// in the Prometheus metrics, nothing misdecoded.
#include <doctest/doctest.h>

#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "chdb_server.hpp"
#include "requirements.hpp"
#include "test_helpers.hpp"
#include "traffic.hpp"

using namespace microsentinel::testing;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Runs a reference binary to completion; its output goes to `log`.
int run_tool(const std::vector<std::string>& argv, const fs::path& log)
{
    child_process p(argv, log);
    return p.wait_exit(60s);
}

std::string metrics(std::uint16_t port) { return http_request(port, "GET", "/metrics").body; }

// Samples of one layout negotiated from BTF, as the agent reports it.
bool layout_is(const std::string& body, const std::string& layout)
{
    return body.find("micro_sentinel_sample_layout_info{layout=\"" + layout + "\",source=\"btf\"} 1") !=
           std::string::npos;
}

// Waits, bounded by time, until the agent's metrics satisfy `ok`, making
// loopback traffic (fresh connections each round) meanwhile.
template <class Pred>
std::string traffic_until(std::uint16_t port, Pred ok, std::chrono::seconds limit)
{
    const auto end = std::chrono::steady_clock::now() + limit;
    std::string body;
    while (std::chrono::steady_clock::now() < end) {
        loopback_traffic().run_for(500ms);
        body = metrics(port);
        if (ok(body))
            break;
    }
    return body;
}

std::uint64_t count_of(microsentinel::testing::chdb_server& ch, const std::string& sql)
{
    microsentinel::clickhouse::client c(ch.url());
    return std::stoull(c.execute(sql));
}

} // namespace

TEST_CASE("the upgrade guide works end to end: migrate, upgrade the collector under the agent, check, roll back")
{
    require_root();
    const std::string pin_dir = "/sys/fs/bpf/ms_guide_" + std::to_string(getpid());
    temp_dir dir;
    chdb_server ch;

    // Step 2: migrations, first as the previous release had them, with a historical row.
    fs::create_directories(dir / "baseline");
    fs::copy_file(fs::path(MS_MIGRATIONS_DIR) / "0001_baseline.sql", dir / "baseline" / "0001_baseline.sql");
    REQUIRE(run_tool({MS_MIGRATE, "--clickhouse-url", ch.url(), "--migrations", (dir / "baseline").string()},
                     dir / "migrate0.log") == 0);
    microsentinel::clickhouse::client sql(ch.url());
    sql.execute("INSERT INTO ms_raw_samples (ts, host, flow_id) VALUES (now64(9) - 3600, 'old-host', 7)");
    REQUIRE(run_tool({MS_MIGRATE, "--clickhouse-url", ch.url(), "--migrations", MS_MIGRATIONS_DIR},
                     dir / "migrate.log") == 0);
    const std::string describe = read_file(dir / "migrate.log");
    CHECK(describe.find("ms_data_objects") != std::string::npos);
    CHECK(count_of(ch, "SELECT count() FROM ms_raw_samples WHERE flow_id = 7 AND direction = 0") == 1);

    // The host before the upgrade runs the previous release's collector.
    struct unload_at_exit {
        std::string pin_dir, log;
        ~unload_at_exit() { run_tool({MS_LOADER, "--unload", "--pin-dir", pin_dir}, log); }
    } unload{pin_dir, (dir / "unload.log").string()};
    REQUIRE(run_tool({MS_LOADER, "--object", MS_OBJECT_V1, "--pin-dir", pin_dir}, dir / "load_v1.log") == 0);

    // Steps 3 and 4: the new agent starts, then the collector is upgraded under it.
    const std::uint16_t port = free_loopback_port();
    const std::regex tx_cost("micro_sentinel_flow_cost\\{[^}]*direction=\"tx\"");
    child_process agent({MS_AGENT, "--pin-dir", pin_dir, "--listen", "127.0.0.1:" + std::to_string(port),
                         "--clickhouse-url", ch.url(), "--spool-dir", (dir / "spool").string(), "--flush-interval",
                         "300", "--summary", "3"},
                        dir / "agent.log");
    REQUIRE(wait_for_log(dir / "agent.log", "sample layout v1", 20s).find("sample layout v1") != std::string::npos);

    std::string body = traffic_until(port, [](const std::string& b) {
        return b.find("micro_sentinel_flow_cost{") != std::string::npos;
    }, 30s);
    CHECK(layout_is(body, "v1"));
    CHECK_FALSE(std::regex_search(body, tx_cost)); // v1 knows no egress

    REQUIRE(run_tool({MS_LOADER, "--object", MS_OBJECT_V2, "--pin-dir", pin_dir}, dir / "load_v2.log") == 0);
    body = traffic_until(port, [&](const std::string& b) {
        return layout_is(b, "v2") && std::regex_search(b, tx_cost);
    }, 40s);

    // Step 5: the direction label, for both directions.
    CHECK(layout_is(body, "v2"));
    CHECK(std::regex_search(body, std::regex("micro_sentinel_flow_cost\\{[^}]*direction=\"rx\"")));
    CHECK(std::regex_search(body, tx_cost));

    // Step 6: roll back to the previous collector; the agent follows again.
    REQUIRE(run_tool({MS_LOADER, "--object", MS_OBJECT_V1, "--pin-dir", pin_dir}, dir / "rollback.log") == 0);
    body = traffic_until(port, [](const std::string& b) { return layout_is(b, "v1"); }, 30s);
    CHECK(layout_is(body, "v1"));

    // SIGTERM, as systemctl stop does: the agent flushes, drains to ClickHouse and exits 0.
    ::kill(agent.pid(), SIGTERM);
    const int status = agent.wait_exit(60s);
    const std::string log = read_file(dir / "agent.log");
    INFO(log);
    REQUIRE(status == 0);
    std::smatch m;
    REQUIRE(std::regex_search(log, m, std::regex("(\\d+) samples decoded, (\\d+) skipped by the decoder")));
    CHECK(std::stoull(m[1]) > 0);
    CHECK(m[2] == "0"); // not one record decoded with the wrong layout, across two swaps
    CHECK(log.find("sample layout v2") != std::string::npos);

    // Step 5: ingestion resumed, with both directions, rollups and data objects.
    CHECK(count_of(ch, "SELECT count() FROM ms_raw_samples WHERE ts > now() - 300") > 0);
    CHECK(count_of(ch, "SELECT count() FROM ms_raw_samples WHERE direction = 1 AND ts > now() - 300") > 0);
    CHECK(count_of(ch, "SELECT count() FROM ms_raw_samples WHERE direction = 0 AND ts > now() - 300") > 0);
    CHECK(count_of(ch, "SELECT count() FROM ms_flow_rollup WHERE direction = 1") > 0);
    CHECK(count_of(ch, "SELECT count() FROM ms_data_objects") > 0);
}
