// micro_sentinel_exporter: replays a capture (file or stdin stream) through the
// decoder and the flow rollup and serves the result to Prometheus.
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <span>
#include <string>
#include <string_view>
#include <thread>

#include <microsentinel/capture.hpp>
#include <microsentinel/prometheus/prometheus.hpp>
#include <microsentinel/rollup.hpp>

#include "../common/stop_signals.hpp"

namespace {

namespace prom = microsentinel::prometheus;
using steady = std::chrono::steady_clock;

constexpr const char* usage = R"(Usage: micro_sentinel_exporter [OPTIONS] [CAPTURE]

Reads a MicroSentinel capture (docs/capture-format.md) from the file CAPTURE,
or from standard input when CAPTURE is "-" or absent (e.g. piped from
micro_sentinel_loader --record -), rolls the samples up per flow and serves
Prometheus metrics at http://LISTEN/metrics until SIGINT or SIGTERM. Scrapers
that ask for OpenMetrics in Accept get it; others get the text format 0.0.4.

Options:
  --listen HOST:PORT   address to serve on (default 127.0.0.1:9105; port 0
                       picks a free port, printed on standard error)
  --top-k N            flows exported per direction and event by cost; the rest
                       is summed into flow="other" (default 50)
  --staleness SECONDS  remove a flow's series when no rollup row named it for
                       this long (default 300)
  --window-ms MS       rollup window: micro_sentinel_flow_cost is the cost in the
                       latest one (default 1000)
  --help               print this text and exit

Exit status: 0 after a signal, 1 on an unreadable capture or a listen error,
2 on bad options.
)";

using microsentinel::examples::stop_requested;

struct options {
    prom::http_options http;
    prom::metrics_config metrics;
    std::uint64_t window_ns = 1'000'000'000;
    std::string input = "-";
};

// Thrown out of the replay when a signal asks to stop mid-input.
struct replay_stopped {};

struct usage_error {
    std::string message;
};

std::uint64_t parse_positive(std::string_view flag, std::string_view value)
{
    std::uint64_t v = 0;
    auto r = std::from_chars(value.data(), value.data() + value.size(), v);
    if (r.ec != std::errc{} || r.ptr != value.data() + value.size() || v == 0)
        throw usage_error{std::string(flag) + " needs a positive integer, got '" + std::string(value) + "'"};
    return v;
}

options parse_args(int argc, char** argv)
{
    options o;
    bool have_input = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        auto value = [&]() -> std::string_view {
            if (i + 1 >= argc)
                throw usage_error{std::string(arg) + " needs a value"};
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") {
            std::fputs(usage, stdout);
            std::exit(0);
        } else if (arg == "--listen") {
            o.http.listen = std::string(value());
        } else if (arg == "--top-k") {
            o.metrics.top_k = parse_positive(arg, value());
        } else if (arg == "--staleness") {
            o.metrics.staleness = std::chrono::seconds(parse_positive(arg, value()));
        } else if (arg == "--window-ms") {
            o.window_ns = parse_positive(arg, value()) * 1'000'000;
        } else if (arg.starts_with("-") && arg != "-") {
            throw usage_error{"unknown option '" + std::string(arg) + "'"};
        } else if (have_input) {
            throw usage_error{"more than one capture given ('" + o.input + "' and '" + std::string(arg) + "')"};
        } else {
            o.input = std::string(arg);
            have_input = true;
        }
    }
    return o;
}

// Replay callbacks: count, roll up, and publish as the stream goes (at least
// once a second while samples flow) so scrapes see a stream's progress.
template <class Rollup>
struct exporter_pipeline {
    exporter_pipeline(prom::metrics_state& st, const prom::http_exporter& srv, microsentinel::sample_decoder& dec,
                      Rollup& r)
        : state(st), server(srv), decoder(dec), rollup(r)
    {
    }

    prom::metrics_state& state;
    const prom::http_exporter& server;
    microsentinel::sample_decoder& decoder;
    Rollup& rollup;
    steady::time_point last_publish = steady::now();
    std::uint64_t samples_seen = 0;
    std::uint64_t max_tsc = 0;
    // Where sample time stood when the stream last went quiet, and when that was.
    std::uint64_t quiet_since_samples = ~std::uint64_t{0};
    std::uint64_t quiet_tsc = 0;
    steady::time_point quiet_at{};

    void on_sample(const microsentinel::sample& s)
    {
        if (stop_requested)
            throw replay_stopped{};
        state.count_sample(s.dir, s.pmu_event);
        rollup.add(s, s.ip, 0);
        if (s.tsc > max_tsc)
            max_tsc = s.tsc;
        if (++samples_seen % 4096 == 0 && steady::now() - last_publish >= std::chrono::seconds(1))
            publish();
    }
    void on_layout(const microsentinel::negotiated_layout& layout) { prom::set_layout(state, layout); }

    // The loader writes counters about once a second, samples or not. They
    // publish, so a live stream is served as it goes; and while no samples
    // arrive they move the rollup's clock on by the real time that passed, so
    // the last window closes and shows. Replayed at full speed, almost no real
    // time passes between frames, and sample time alone decides.
    void on_counters(const microsentinel::collector_counters& c)
    {
        const auto now = steady::now();
        if (samples_seen != quiet_since_samples) {
            quiet_since_samples = samples_seen;
            quiet_tsc = max_tsc;
            quiet_at = now;
        } else if (samples_seen != 0) {
            rollup.advance_time(quiet_tsc + std::uint64_t(std::chrono::nanoseconds(now - quiet_at).count()));
        }
        prom::set_collector_counters(state, c);
        publish();
    }

    void publish()
    {
        last_publish = steady::now();
        prom::set_decode_stats(state, decoder.stats());
        state.set_http_stats(server.stats());
        state.publish(last_publish);
    }
};

int run(const options& o)
{
    std::FILE* in = o.input == "-" ? stdin : std::fopen(o.input.c_str(), "rb");
    if (in == nullptr) {
        std::fprintf(stderr, "micro_sentinel_exporter: cannot open %s: %s\n", o.input.c_str(), std::strerror(errno));
        return 1;
    }
    const std::string source = o.input == "-" ? "standard input" : o.input;

    prom::metrics_state state(o.metrics);
    prom::http_exporter server = [&] {
        microsentinel::examples::stop_signals_blocked only_main_thread_takes_signals(true);
        return prom::http_exporter(o.http, [&state] { return state.current(); });
    }();
    std::fprintf(stderr, "micro_sentinel_exporter: serving http://%s/metrics from %s\n", server.address().c_str(),
                 source.c_str());

    int status = 0;
    try {
        microsentinel::capture_reader reader(in, source);
        microsentinel::sample_decoder decoder(reader.header().layout);
        prom::set_layout(state, reader.header().layout);

        microsentinel::rollup_config rc;
        rc.window_ns = o.window_ns;
        rc.boot_to_wall_ns = reader.header().boot_to_wall_ns;
        microsentinel::flow_rollup rollup(rc, [&state](std::span<const microsentinel::flow_rollup_row> rows) {
            state.add_flow_rows(rows, steady::now());
        });
        exporter_pipeline<decltype(rollup)> pipeline(state, server, decoder, rollup);
        microsentinel::replay(reader, decoder, pipeline);
        rollup.flush();
        pipeline.publish();
    } catch (const replay_stopped&) {
    } catch (const microsentinel::capture_error& e) {
        if (!stop_requested) {
            std::fprintf(stderr, "micro_sentinel_exporter: %s\n", e.what());
            status = 1;
        }
    }
    if (in != stdin)
        std::fclose(in);

    // Input done: keep serving, and keep publishing so that stale flows expire.
    while (!stop_requested && status == 0) {
        ::sleep(1);
        state.set_http_stats(server.stats());
        state.publish(steady::now());
    }
    server.stop();
    return status;
}

} // namespace

int main(int argc, char** argv)
{
    try {
        return run(parse_args(argc, argv));
    } catch (const usage_error& e) {
        std::fprintf(stderr, "micro_sentinel_exporter: %s; see --help\n", e.message.c_str());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "micro_sentinel_exporter: %s\n", e.what());
        return 1;
    }
}
