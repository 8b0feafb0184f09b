// The HTTP side against real sockets on loopback: routing, negotiation,
// timeouts of slow clients, the connection cap and concurrent scrapes.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <microsentinel/prometheus/http_exporter.hpp>
#include <microsentinel/prometheus/metrics_state.hpp>

#include "requirements.hpp"
#include "test_helpers.hpp"

namespace prom = microsentinel::prometheus;
namespace mt = microsentinel::testing;
using microsentinel::direction;
using namespace std::chrono_literals;

namespace {

constexpr const char* prometheus_accept =
    "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n";

struct fixture {
    prom::metrics_state state;
    prom::http_exporter server;

    explicit fixture(prom::http_options options = loopback())
        : server(std::move(options), [this] { return state.current(); })
    {
        const std::vector<microsentinel::flow_rollup_row> rows = {
            {1000, 42, direction::rx, MS_EVT_CPU_CLOCK, 0, 0, 0, 3, 2.5},
            {1000, 43, direction::tx, MS_EVT_CPU_CLOCK, 0, 0, 0, 1, 1.0}};
        state.add_flow_rows(rows, prom::metrics_state::clock::now());
        state.count_sample(direction::rx, MS_EVT_CPU_CLOCK);
        state.publish(prom::metrics_state::clock::now());
    }

    static prom::http_options loopback()
    {
        prom::http_options o;
        o.listen = "127.0.0.1:0";
        return o;
    }
};

// Bounded wait for the server to close a connection: recv returns 0 (or an
// error) once it did; the socket's receive timeout bounds the wait.
bool closed_by_server(int fd)
{
    char buf[256];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n == 0)
            return true;
        if (n < 0)
            return errno == ECONNRESET;
    }
}

} // namespace

TEST_CASE("GET /metrics answers 200 in the text format by default")
{
    fixture f;
    CHECK(f.server.port() != 0);
    CHECK(f.server.address() == "127.0.0.1:" + std::to_string(f.server.port()));
    auto r = mt::http_request(f.server.port(), "GET", "/metrics");
    CHECK(r.status == 200);
    CHECK(r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8");
    CHECK(r.headers["content-length"] == std::to_string(r.body.size()));
    CHECK(r.body.find("micro_sentinel_flow_cost{flow=\"42\",direction=\"rx\",event=\"cpu_clock\"} 2.5\n") !=
          std::string::npos);
    CHECK(r.body.find("micro_sentinel_flow_cost{flow=\"43\",direction=\"tx\",event=\"cpu_clock\"} 1\n") !=
          std::string::npos);
    CHECK(r.body.find("# EOF") == std::string::npos);

    SUBCASE("a query string does not change the route")
    {
        CHECK(mt::http_request(f.server.port(), "GET", "/metrics?debug=1").status == 200);
    }
}

TEST_CASE("a scraper that asks for OpenMetrics gets it")
{
    fixture f;
    auto r = mt::http_request(f.server.port(), "GET", "/metrics", prometheus_accept);
    CHECK(r.status == 200);
    CHECK(r.headers["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8");
    CHECK(r.body.find("# TYPE micro_sentinel_samples counter\n") != std::string::npos);
    CHECK(r.body.find("micro_sentinel_samples_total{direction=\"rx\",event=\"cpu_clock\"} 1\n") != std::string::npos);
    REQUIRE(r.body.size() > 6);
    CHECK(r.body.substr(r.body.size() - 6) == "# EOF\n");
}

TEST_CASE("unknown paths get 404 and other methods 405")
{
    fixture f;
    CHECK(mt::http_request(f.server.port(), "GET", "/").status == 404);
    CHECK(mt::http_request(f.server.port(), "GET", "/metrics/extra").status == 404);
    CHECK(mt::http_request(f.server.port(), "GET", "/../etc/passwd").status == 404);
    auto post = mt::http_request(f.server.port(), "POST", "/metrics", "Content-Length: 0\r\n");
    CHECK(post.status == 405);
    CHECK(post.headers["allow"] == "GET");
    CHECK(mt::http_request(f.server.port(), "DELETE", "/metrics").status == 405);
    CHECK(mt::http_request(f.server.port(), "HEAD", "/metrics").status == 405);
    auto s = f.server.stats();
    CHECK(s.not_found == 3);
    CHECK(s.method_not_allowed == 3);
    CHECK(s.scrapes == 0);
}

TEST_CASE("malformed and oversized requests are refused")
{
    prom::http_options o = fixture::loopback();
    o.max_request_bytes = 1024;
    fixture f(o);
    {
        int fd = mt::connect_loopback(f.server.port());
        mt::send_text(fd, "garbage\r\n\r\n");
        CHECK(mt::parse_response(mt::receive_all(fd)).status == 400);
        ::close(fd);
    }
    {
        int fd = mt::connect_loopback(f.server.port());
        mt::send_text(fd, "GET /metrics HTTP/1.1\r\nX-Filler: " + std::string(4096, 'x') + "\r\n\r\n");
        CHECK(mt::parse_response(mt::receive_all(fd)).status == 431);
        ::close(fd);
    }
    CHECK(f.server.stats().bad_requests == 2);
}

TEST_CASE("slow and silent clients do not block a concurrent scrape")
{
    prom::http_options o = fixture::loopback();
    o.io_timeout = 60s; // far beyond the client's 20 s receive timeout: a blocked scrape would fail
    fixture f(o);

    int slow = mt::connect_loopback(f.server.port());
    mt::send_text(slow, "GET /metr"); // and then nothing
    int silent = mt::connect_loopback(f.server.port()); // sends nothing at all

    auto r = mt::http_request(f.server.port(), "GET", "/metrics");
    CHECK(r.status == 200);
    CHECK(mt::http_request(f.server.port(), "GET", "/metrics", prometheus_accept).status == 200);
    CHECK(f.server.stats().timed_out == 0);
    ::close(slow);
    ::close(silent);
}

TEST_CASE("a client that does not finish its request within io_timeout is disconnected and counted")
{
    prom::http_options o = fixture::loopback();
    o.io_timeout = 500ms;
    fixture f(o);

    int slow = mt::connect_loopback(f.server.port());
    mt::send_text(slow, "GET /metrics HTTP/1.1\r\n"); // headers never end
    int silent = mt::connect_loopback(f.server.port());
    CHECK(closed_by_server(slow));
    CHECK(closed_by_server(silent));
    ::close(slow);
    ::close(silent);
    CHECK(f.server.stats().timed_out == 2);
    CHECK(f.server.stats().scrapes == 0);
    CHECK(mt::http_request(f.server.port(), "GET", "/metrics").status == 200);
}

TEST_CASE("beyond the connection cap new connections get 503 at once, and service resumes")
{
    prom::http_options o = fixture::loopback();
    o.max_connections = 1;
    o.io_timeout = 3000ms; // the hog must still hold its slot when the next client arrives
    fixture f(o);
    int hog = mt::connect_loopback(f.server.port());
    mt::send_text(hog, "GET /metrics HTTP/1.1\r\n");
    // The acceptor hands the hog to its thread before it accepts the next one.
    std::this_thread::sleep_for(100ms);
    auto busy = mt::http_request(f.server.port(), "GET", "/metrics");
    CHECK(busy.status == 503);
    CHECK(busy.headers["content-length"] == std::to_string(busy.body.size()));
    CHECK(busy.body == "too many concurrent scrapes; retry\n");
    CHECK(f.server.stats().rejected_busy == 1);
    CHECK(closed_by_server(hog));
    ::close(hog);
    // Bounded by time: the hog's thread is reaped within a second of finishing.
    int status = 0;
    const auto end = std::chrono::steady_clock::now() + 10s;
    while (status != 200 && std::chrono::steady_clock::now() < end) {
        status = mt::http_request(f.server.port(), "GET", "/metrics").status;
        if (status != 200)
            std::this_thread::sleep_for(100ms);
    }
    CHECK(status == 200);
}

TEST_CASE("concurrent scrapes all succeed while the pipeline keeps publishing")
{
    fixture f;
    std::atomic<bool> done{false};
    std::thread publisher([&] {
        while (!done.load()) {
            f.state.count_sample(direction::tx, MS_EVT_PAGE_FAULTS);
            f.state.publish(prom::metrics_state::clock::now());
        }
    });
    constexpr int scrapers = 6, per_scraper = 15;
    std::atomic<int> ok{0}, complete{0}, last_failure{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < scrapers; ++i)
        threads.emplace_back([&, i] {
            for (int j = 0; j < per_scraper; ++j) {
                auto r = mt::http_request(f.server.port(), "GET", "/metrics", i % 2 ? prometheus_accept : "");
                if (r.status == 200)
                    ++ok;
                else
                    last_failure = r.status;
                const std::string tail = i % 2 ? "# EOF\n" : "micro_sentinel_exporter_rows_late_total 0\n";
                if (r.body.size() >= tail.size() && r.body.substr(r.body.size() - tail.size()) == tail)
                    ++complete;
            }
        });
    for (auto& t : threads)
        t.join();
    done = true;
    publisher.join();
    CHECK(last_failure.load() == 0);
    CHECK(ok.load() == scrapers * per_scraper);
    CHECK(complete.load() == scrapers * per_scraper);
    CHECK(f.server.stats().scrapes == std::uint64_t(scrapers * per_scraper));
}

TEST_CASE("an IPv6 listen address in brackets works")
{
    // Without IPv6 only this case is skipped (skip_or_fail would end the whole binary).
    int probe = ::socket(AF_INET6, SOCK_STREAM, 0);
    if (probe < 0) {
        REQUIRE_MESSAGE(!mt::running_in_ci(), "no IPv6 socket; CI=true needs one");
        MESSAGE("skipped: no IPv6 on this machine");
        return;
    }
    ::close(probe);
    prom::metrics_state state;
    prom::http_exporter server({"[::1]:0"}, [&state] { return state.current(); });
    CHECK(server.address() == "[::1]:" + std::to_string(server.port()));

    int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(server.port());
    a.sin6_addr = in6addr_loopback;
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    mt::send_text(fd, "GET /metrics HTTP/1.1\r\n\r\n");
    CHECK(mt::parse_response(mt::receive_all(fd)).status == 200);
    ::close(fd);
}

TEST_CASE("an unusable listen address is refused with the cause")
{
    CHECK_THROWS_WITH_AS(prom::http_exporter({"no-port-here"}, [] { return nullptr; }),
                         doctest::Contains("expected HOST:PORT"), prom::http_error);
    CHECK_THROWS_WITH_AS(prom::http_exporter({"127.0.0.1:99999"}, [] { return nullptr; }),
                         doctest::Contains("expected HOST:PORT"), prom::http_error);
    fixture f;
    CHECK_THROWS_WITH_AS(prom::http_exporter({f.server.address()}, [] { return nullptr; }),
                         doctest::Contains("Address already in use"), prom::http_error);
}

TEST_CASE("stop() returns promptly even while a client holds a connection open")
{
    prom::http_options o = fixture::loopback();
    o.io_timeout = 60s;
    fixture f(o);
    int idle = mt::connect_loopback(f.server.port());
    std::this_thread::sleep_for(100ms);
    f.server.stop(); // would take 60 s if the connection thread ignored stop()
    CHECK(closed_by_server(idle));
    ::close(idle);
}
