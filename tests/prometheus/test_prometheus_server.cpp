// End to end: micro_sentinel_exporter replays a capture written here field by
// field; promtool checks what it serves, and a real Prometheus server scrapes
// it and answers micro_sentinel_flow_cost{direction="rx"|"tx"} from its API.
#include <doctest/doctest.h>

#include <cctype>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "requirements.hpp"
#include "test_helpers.hpp"

namespace mt = microsentinel::testing;
using namespace std::chrono_literals;

namespace {

const std::string exporter = MICROSENTINEL_EXPORTER_PATH;

// One window (tsc 1.0 s .. 1.5 s): rx flow 1001 on cpu-clock (3 samples),
// tx flow 2002 on cpu-clock (2 samples, 2 GSO segments each), tx flow 2003 on
// page-faults (1 sample).
// Event codes and direction bytes as the ABI defines them: cpu-clock 1,
// page-faults 2; rx 0, tx 1.
constexpr std::uint32_t cpu_clock = 1, page_faults = 2;
constexpr std::uint8_t rx = 0, tx = 1;

std::string capture_bytes()
{
    return mt::make_v2_capture(
        {
            {1'000'000'000, cpu_clock, 1001, 1, rx},
            {1'100'000'000, cpu_clock, 1001, 1, rx},
            {1'200'000'000, cpu_clock, 1001, 0, rx},
            {1'300'000'000, cpu_clock, 2002, 2, tx},
            {1'400'000'000, cpu_clock, 2002, 2, tx},
            {1'500'000'000, page_faults, 2003, 1, tx},
        },
        5, 7);
}

// The exporter's "serving http://ADDR/metrics" line gives its port.
std::uint16_t exporter_port(const std::filesystem::path& log)
{
    const std::string text = mt::wait_for_log(log, "/metrics", 20s);
    const auto at = text.find("serving http://127.0.0.1:");
    INFO(text);
    REQUIRE(at != std::string::npos);
    return std::uint16_t(std::stoul(text.substr(at + std::string("serving http://127.0.0.1:").size())));
}

// GET /metrics until the body holds `needle` or 20 s passed (the exporter
// publishes after its input); the last answer.
mt::http_response scrape_until(std::uint16_t port, std::string_view needle, std::chrono::milliseconds pause = 100ms)
{
    mt::http_response r;
    const auto end = std::chrono::steady_clock::now() + 20s;
    do {
        r = mt::http_request(port, "GET", "/metrics");
        if (r.body.find(needle) != std::string::npos)
            break;
        std::this_thread::sleep_for(pause);
    } while (std::chrono::steady_clock::now() < end);
    return r;
}

std::string url_encode(std::string_view s)
{
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '_' || c == '-' || c == '.')
            out += char(c);
        else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

} // namespace

TEST_CASE("--help describes the options and exits 0; a bad option exits 2 naming it")
{
    mt::temp_dir dir;
    {
        mt::child_process p({exporter, "--help"}, dir / "help.txt");
        CHECK(p.wait_exit(20s) == 0);
    }
    const std::string help = mt::read_file(dir / "help.txt");
    for (const char* option : {"--listen", "--top-k", "--staleness", "--window-ms", "127.0.0.1:9105", "(default 50)"})
        CHECK(help.find(option) != std::string::npos);
    {
        mt::child_process p({exporter, "--top-k", "zero"}, dir / "bad.txt");
        CHECK(p.wait_exit(20s) == 2);
    }
    CHECK(mt::read_file(dir / "bad.txt").find("--top-k needs a positive integer, got 'zero'") != std::string::npos);
}

TEST_CASE("a damaged capture makes the exporter exit 1 naming the byte offset")
{
    mt::temp_dir dir;
    std::string bytes = capture_bytes();
    const std::size_t header_len = 8 + 2 + 2 + 4 + 8 + 2 + 9 + 10;
    bytes[header_len] = 9; // first frame's type: unknown
    mt::write_file(dir / "bad.cap", bytes);
    mt::child_process p({exporter, "--listen", "127.0.0.1:0", (dir / "bad.cap").string()}, dir / "log.txt");
    CHECK(p.wait_exit(20s) == 1);
    const std::string log = mt::read_file(dir / "log.txt");
    INFO(log);
    CHECK(log.find("byte offset " + std::to_string(header_len) + ": unknown frame type 9") != std::string::npos);
}

TEST_CASE("the exporter serves a capture read from standard input, and promtool accepts it")
{
    const std::string promtool = mt::require_program("promtool", "prometheus");
    mt::temp_dir dir;
    mt::write_file(dir / "in.cap", capture_bytes());
    mt::child_process p({exporter, "--listen", "127.0.0.1:0"}, dir / "log.txt", dir / "in.cap");
    const std::uint16_t port = exporter_port(dir / "log.txt");

    // Publishing follows the end of input; wait (bounded) until the rows are there.
    mt::http_response r = scrape_until(port, "flow=\"1001\"");
    INFO(r.body);
    REQUIRE(r.status == 200);
    CHECK(r.body.find("micro_sentinel_flow_cost{flow=\"1001\",direction=\"rx\",event=\"cpu_clock\"} 3\n") !=
          std::string::npos);
    CHECK(r.body.find("micro_sentinel_flow_cost{flow=\"2002\",direction=\"tx\",event=\"cpu_clock\"} 1\n") !=
          std::string::npos);
    CHECK(r.body.find("micro_sentinel_flow_cost{flow=\"2003\",direction=\"tx\",event=\"page_faults\"} 1\n") !=
          std::string::npos);
    CHECK(r.body.find("micro_sentinel_samples_total{direction=\"rx\",event=\"cpu_clock\"} 3\n") != std::string::npos);
    CHECK(r.body.find("micro_sentinel_samples_total{direction=\"tx\",event=\"cpu_clock\"} 2\n") != std::string::npos);
    CHECK(r.body.find("micro_sentinel_samples_dropped_total{reason=\"ring_full\"} 7\n") != std::string::npos);
    CHECK(r.body.find("micro_sentinel_samples_dropped_total{reason=\"throttled\"} 5\n") != std::string::npos);
    CHECK(r.body.find("micro_sentinel_samples_dropped_total{reason=\"truncated\"} 0\n") != std::string::npos);
    CHECK(r.body.find("micro_sentinel_sample_layout_info{layout=\"v2\",source=\"capture_header\"} 1\n") !=
          std::string::npos);

    mt::write_file(dir / "metrics.txt", r.body);
    const std::string cmd = promtool + " check metrics < " + (dir / "metrics.txt").string() + " > " +
                            (dir / "promtool.txt").string() + " 2>&1";
    int rc = std::system(cmd.c_str());
    INFO(mt::read_file(dir / "promtool.txt"));
    CHECK(WIFEXITED(rc));
    CHECK(WEXITSTATUS(rc) == 0);
    CHECK(mt::read_file(dir / "promtool.txt").empty());

    // The server's own counts reach the metrics with the next publish (each second).
    const std::string counted = "micro_sentinel_exporter_http_connections_total{outcome=\"not_found\"} 1\n";
    CHECK(mt::http_request(port, "GET", "/nope").status == 404);
    r = scrape_until(port, counted, 200ms);
    CHECK(r.body.find(counted) != std::string::npos);

    CHECK(p.terminate() == 0); // SIGTERM is a clean shutdown
}

TEST_CASE("while a stream is still open, the windows it closed are already served")
{
    mt::temp_dir dir;
    const auto fifo = dir / "stream";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    mt::child_process p({exporter, "--listen", "127.0.0.1:0", "-"}, dir / "log.txt", fifo);
    const int writer = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC); // waits for the exporter to open it
    REQUIRE(writer >= 0);
    // Window [1 s, 2 s) for rx flow 1001, closed by a sample at 2.5 s; then the
    // collector's counters, as the loader writes them each second.
    const std::string all = mt::make_v2_capture({{1'000'000'000, cpu_clock, 1001, 1, rx},
                                                 {1'200'000'000, cpu_clock, 1001, 1, rx},
                                                 {2'500'000'000, cpu_clock, 1001, 1, rx}},
                                                0, 0);
    REQUIRE(::write(writer, all.data(), all.size()) == ssize_t(all.size()));
    const std::uint16_t port = exporter_port(dir / "log.txt");

    mt::http_response r = scrape_until(port, "flow=\"1001\"");
    INFO(r.body);
    CHECK(r.body.find("micro_sentinel_flow_cost{flow=\"1001\",direction=\"rx\",event=\"cpu_clock\"} 2\n") !=
          std::string::npos);
    CHECK(r.body.find("micro_sentinel_rollup_window_start_seconds 1\n") != std::string::npos);
    CHECK(r.body.find("micro_sentinel_samples_total{direction=\"rx\",event=\"cpu_clock\"} 3\n") !=
          std::string::npos);
    ::close(writer);
    CHECK(p.terminate() == 0);
}

TEST_CASE("when a live stream goes quiet, its last window closes with real time and shows")
{
    mt::temp_dir dir;
    const auto fifo = dir / "stream";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    mt::child_process p({exporter, "--listen", "127.0.0.1:0", "--window-ms", "500"}, dir / "log.txt", fifo);
    const int writer = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
    REQUIRE(writer >= 0);
    // Samples in window [1.0 s, 1.5 s) and nothing after them: only real time can close it.
    const std::string head = mt::capture_header_bytes(2) + mt::sample_frame({1'000'000'000, cpu_clock, 4004, 1, tx}) +
                             mt::sample_frame({1'100'000'000, cpu_clock, 4004, 1, tx});
    REQUIRE(::write(writer, head.data(), head.size()) == ssize_t(head.size()));
    const std::uint16_t port = exporter_port(dir / "log.txt");

    // Counters every 200 ms, as a loader with an idle collector writes them.
    const std::string counters = mt::counters_frame(2, 0, 0);
    mt::http_response r;
    const auto end = std::chrono::steady_clock::now() + 20s;
    do {
        REQUIRE(::write(writer, counters.data(), counters.size()) == ssize_t(counters.size()));
        std::this_thread::sleep_for(200ms);
        r = mt::http_request(port, "GET", "/metrics");
    } while (r.body.find("flow=\"4004\"") == std::string::npos && std::chrono::steady_clock::now() < end);
    INFO(r.body);
    CHECK(r.body.find("micro_sentinel_flow_cost{flow=\"4004\",direction=\"tx\",event=\"cpu_clock\"} 2\n") !=
          std::string::npos);
    ::close(writer);
    CHECK(p.terminate() == 0);
}

TEST_CASE("a layout change in the stream shows in the layout info, and decoder skips are counted")
{
    mt::temp_dir dir;
    std::string bytes = mt::capture_header_bytes(2);
    bytes += mt::sample_frame({1'000'000'000, cpu_clock, 5, 1, tx});
    std::string bad = mt::sample_frame({1'100'000'000, cpu_clock, 5, 1, 7}); // direction 7: not a v2 record
    bytes += bad;
    bytes += mt::layout_frame(1);
    bytes += mt::sample_frame({1'200'000'000, cpu_clock, 6, 1, 0});
    bytes += mt::counters_frame(3, 0, 0);
    mt::write_file(dir / "in.cap", bytes);
    mt::child_process p({exporter, "--listen", "127.0.0.1:0", (dir / "in.cap").string()}, dir / "log.txt");
    const std::uint16_t port = exporter_port(dir / "log.txt");

    mt::http_response r = scrape_until(port, "flow=\"6\"");
    INFO(r.body);
    CHECK(r.body.find("micro_sentinel_sample_layout_info{layout=\"v1\",source=\"capture_header\"} 1\n") !=
          std::string::npos);
    CHECK(r.body.find("layout=\"v2\"") == std::string::npos);
    CHECK(r.body.find("micro_sentinel_flow_cost{flow=\"5\",direction=\"tx\",event=\"cpu_clock\"} 1\n") !=
          std::string::npos);
    CHECK(r.body.find("micro_sentinel_flow_cost{flow=\"6\",direction=\"rx\",event=\"cpu_clock\"} 1\n") !=
          std::string::npos);
    CHECK(r.body.find("micro_sentinel_samples_dropped_total{reason=\"bad_direction\"} 1\n") != std::string::npos);
    CHECK(p.terminate() == 0);
}

TEST_CASE("a real Prometheus scrapes the exporter and answers flow cost queries by direction")
{
    const std::string prometheus = mt::require_program("prometheus", "prometheus");
    mt::temp_dir dir;
    mt::write_file(dir / "in.cap", capture_bytes());
    mt::child_process exp({exporter, "--listen", "127.0.0.1:0", (dir / "in.cap").string()}, dir / "exporter.txt");
    const std::uint16_t exporter_at = exporter_port(dir / "exporter.txt");

    const std::uint16_t prometheus_at = mt::free_loopback_port();
    mt::write_file(dir / "prometheus.yml", "global:\n"
                                           "  scrape_interval: 1s\n"
                                           "  scrape_timeout: 1s\n"
                                           "scrape_configs:\n"
                                           "  - job_name: micro_sentinel\n"
                                           "    static_configs:\n"
                                           "      - targets: ['127.0.0.1:" +
                                               std::to_string(exporter_at) + "']\n");
    std::filesystem::create_directory(dir / "tsdb");
    mt::child_process prom({prometheus, "--config.file=" + (dir / "prometheus.yml").string(),
                            "--storage.tsdb.path=" + (dir / "tsdb").string(),
                            "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_at)},
                           dir / "prometheus.txt");

    auto query = [&](const std::string& promql) {
        nlohmann::json result = nlohmann::json::array();
        try {
            auto r = mt::http_request(prometheus_at, "GET", "/api/v1/query?query=" + url_encode(promql));
            if (r.status == 200) {
                auto j = nlohmann::json::parse(r.body);
                if (j.at("status") == "success")
                    result = j.at("data").at("result");
            }
        } catch (const std::exception&) {
            // Prometheus is still starting: not listening yet.
        }
        return result;
    };

    nlohmann::json rx, tx;
    const auto end = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < end) {
        rx = query("micro_sentinel_flow_cost{direction=\"rx\"}");
        tx = query("micro_sentinel_flow_cost{direction=\"tx\"}");
        if (!rx.empty() && !tx.empty())
            break;
        REQUIRE_MESSAGE(prom.wait_exit(0ms) == -1, mt::read_file(dir / "prometheus.txt"));
        std::this_thread::sleep_for(500ms);
    }
    INFO("prometheus log: " << mt::read_file(dir / "prometheus.txt"));
    REQUIRE(!rx.empty());
    REQUIRE(!tx.empty());

    std::map<std::string, std::string> rx_values, tx_values; // flow/event -> value
    for (const auto& s : rx) {
        CHECK(s.at("metric").at("direction") == "rx");
        CHECK(s.at("metric").at("job") == "micro_sentinel");
        rx_values[s.at("metric").at("flow").get<std::string>() + "/" + s.at("metric").at("event").get<std::string>()] =
            s.at("value").at(1).get<std::string>();
    }
    for (const auto& s : tx) {
        CHECK(s.at("metric").at("direction") == "tx");
        tx_values[s.at("metric").at("flow").get<std::string>() + "/" + s.at("metric").at("event").get<std::string>()] =
            s.at("value").at(1).get<std::string>();
    }
    CHECK(rx_values == std::map<std::string, std::string>{{"1001/cpu_clock", "3"}, {"other/cpu_clock", "0"}});
    CHECK(tx_values == std::map<std::string, std::string>{{"2002/cpu_clock", "1"},
                                                          {"other/cpu_clock", "0"},
                                                          {"2003/page_faults", "1"},
                                                          {"other/page_faults", "0"}});

    // Prometheus negotiated OpenMetrics and parsed the info and counter families.
    CHECK(query("micro_sentinel_sample_layout_info{layout=\"v2\",source=\"capture_header\"}").size() == 1);
    CHECK(query("micro_sentinel_samples_total{direction=\"tx\",event=\"page_faults\"}").size() == 1);
}
