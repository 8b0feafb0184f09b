// micro_sentinel_agent: the collector's samples, attributed and rolled up per
// flow, served to Prometheus and written to ClickHouse. The pinned collector is
// read through the loader's recorder, so the agent consumes one format — the
// capture stream — whether it runs live or replays a file.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <microsentinel/capture.hpp>
#include <microsentinel/prometheus/http_exporter.hpp>

#include "../common/stop_signals.hpp"
#include "../loader/error.hpp"
#include "../loader/recorder.hpp"
#include "agent_pipeline.hpp"
#include "options.hpp"

namespace {

using namespace microsentinel;

constexpr int exit_runtime = 1, exit_usage = 2, exit_undelivered = 3;

using examples::stop_requested;

void log_line(const std::string& line) { std::fprintf(stderr, "micro_sentinel_agent: %s\n", line.c_str()); }

std::string this_host_name()
{
    char name[256] = {};
    gethostname(name, sizeof name - 1);
    return name;
}

// The live source: the loader's recorder writes the pinned collector's
// samples into a pipe, from its own thread; the agent reads the other end.
class pinned_source {
public:
    pinned_source(const std::string& pin_dir, double duration_s)
    {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
            throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
        read_end_ = fdopen(fds[0], "rb");
        std::FILE* write_end = fdopen(fds[1], "wb");
        thread_ = std::thread([this, pin_dir, duration_s, write_end] {
            try {
                loader::record_pinned(pin_dir, write_end, duration_s, &stop_requested);
            } catch (const std::exception& e) {
                error_ = e.what();
            }
            std::fclose(write_end); // the reader sees the end of the stream
        });
    }
    ~pinned_source() { finish(); }

    std::FILE* stream() const noexcept { return read_end_; }

    // Stops the recorder and waits for it; returns its failure, empty if it
    // had none. The read end closes first, so a recorder blocked on a full
    // pipe gets EPIPE instead of waiting for a reader that is gone.
    std::string finish()
    {
        stop_requested = 1;
        if (read_end_) {
            std::fclose(read_end_);
            read_end_ = nullptr;
        }
        if (thread_.joinable())
            thread_.join();
        return error_;
    }

private:
    std::FILE* read_end_ = nullptr;
    std::thread thread_;
    std::string error_;
};

int run(agent::options& o)
{
    std::signal(SIGPIPE, SIG_IGN);
    const bool live = o.capture.empty();
    // Live, a stop signal ends the input by itself: the recorder drains the
    // ring buffer, then closes the pipe. So reads restart, and nothing in
    // flight is lost; a capture's read is interrupted instead.
    std::optional<examples::stop_signals_blocked> only_main_thread_takes_signals(std::in_place, !live);

    prometheus::metrics_state metrics(o.metrics_config);
    std::optional<prometheus::http_exporter> server;
    if (o.metrics) {
        server.emplace(o.http, [&metrics] { return metrics.current(); });
        log_line("serving http://" + server->address() + "/metrics");
    }

    std::optional<pinned_source> pinned;
    std::FILE* in = nullptr;
    std::string source_name;
    if (live) {
        pinned.emplace(o.pin_dir, o.duration_s);
        in = pinned->stream();
        source_name = "the collector pinned at " + o.pin_dir;
    } else if (o.capture == "-") {
        in = stdin;
        source_name = "standard input";
    } else {
        in = std::fopen(o.capture.c_str(), "rb");
        if (!in) {
            log_line("cannot open capture " + o.capture + ": " + std::strerror(errno));
            return exit_runtime;
        }
        source_name = o.capture;
    }
    only_main_thread_takes_signals.reset();

    std::optional<capture_reader> reader;
    try {
        reader.emplace(in, source_name);
    } catch (const capture_error& e) {
        std::string why = pinned ? pinned->finish() : "";
        log_line(why.empty() ? e.what() : why);
        return exit_runtime;
    }
    const capture_header& header = reader->header();
    const std::string host = !o.host.empty() ? o.host : live ? this_host_name() : header.host;

    std::optional<clickhouse::writer> writer;
    if (!o.clickhouse.writer.urls.empty()) {
        auto& w = o.clickhouse.writer;
        w.client.auth = clickhouse::load_credentials(o.clickhouse.user, o.clickhouse.password_file);
        w.host = host;
        w.boot_to_wall_ns = header.boot_to_wall_ns;
        w.log = [](std::string_view line) { log_line(std::string(line)); };
        w.interrupted = [] { return stop_requested != 0; };
        writer.emplace(w);
    }
    std::optional<data_object_registry> registry;
    if (o.data_objects && (live || header.host == this_host_name()))
        registry.emplace(host);

    sample_decoder decoder(header.layout);
    rollup_config rc;
    rc.window_ns = o.rollup_window_ms * 1'000'000;
    rc.max_entries = o.rollup_max_entries;
    rc.boot_to_wall_ns = header.boot_to_wall_ns;
    agent::agent_pipeline pipeline({metrics, server ? &*server : nullptr, decoder, writer ? &*writer : nullptr,
                                    registry ? &*registry : nullptr, live},
                                   rc);
    pipeline.on_layout(header.layout);

    int status = 0;
    try {
        replay(*reader, decoder, pipeline);
    } catch (const capture_error& e) {
        if (!stop_requested) {
            log_line(e.what());
            status = exit_runtime;
        }
    }
    pipeline.finish();
    if (pinned) {
        if (std::string why = pinned->finish(); !why.empty()) {
            log_line(why);
            status = exit_runtime;
        }
    }

    if (writer && !writer->drain(std::chrono::milliseconds(o.clickhouse.drain_timeout_ms))) {
        log_line(std::to_string(writer->pending().size()) + " ClickHouse batches stay in " +
                 writer->pending().dir().string() + " and are sent on the next start; last error: " +
                 writer->last_error());
        if (status == 0)
            status = exit_undelivered;
    }

    const auto& ds = decoder.stats();
    const auto& c = pipeline.counters();
    std::printf("micro_sentinel_agent: %llu samples decoded, %llu skipped by the decoder; collector: %llu emitted, "
                "%llu throttled, %llu lost to a full ring buffer\n",
                (unsigned long long)ds.decoded, (unsigned long long)ds.skipped_total(), (unsigned long long)c.emitted,
                (unsigned long long)c.throttled, (unsigned long long)c.ringbuf_full);
    if (o.summary_flows > 0)
        pipeline.summary().print(stdout, o.summary_flows);
    if (in != stdin && !live)
        std::fclose(in);
    return status;
}

} // namespace

int main(int argc, char** argv)
{
    std::optional<agent::options> o;
    try {
        o = agent::parse_options(argc, argv);
    } catch (const examples::usage_error& e) {
        std::fprintf(stderr, "micro_sentinel_agent: %s\n", e.what());
        return exit_usage;
    }
    if (!o)
        return 0;
    try {
        return run(*o);
    } catch (const std::exception& e) {
        log_line(e.what());
        return exit_runtime;
    }
}
