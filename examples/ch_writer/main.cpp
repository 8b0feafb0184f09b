// micro_sentinel_ch_writer: reads a capture (file or stdin), rolls samples up
// per flow and writes raw samples, rollup rows and data objects to ClickHouse.
// See usage() for flags and exit codes.
#include <microsentinel/capture.hpp>
#include <microsentinel/clickhouse/writer.hpp>
#include <microsentinel/data_objects.hpp>
#include <microsentinel/rollup.hpp>

#include "../common/clickhouse_flags.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ch = microsentinel::clickhouse;
using namespace std::chrono_literals;

namespace {

enum exit_code : int {
    exit_ok = 0,          // every row delivered
    exit_usage = 1,       // bad flags or configuration, or an unusable spool directory
    exit_bad_input = 2,   // the capture is malformed or unreadable (rows before the error were written)
    exit_undelivered = 3, // batches remain in the spool (server down, wrong URL or credentials); retried on the next start
    exit_lost_rows = 4,   // rows were quarantined (rejected by the server) or dropped (table missing)
};

void usage(std::FILE* out)
{
    std::fputs(
        "Usage: micro_sentinel_ch_writer [options] [CAPTURE]\n"
        "Reads a MicroSentinel capture (docs/capture-format.md) from CAPTURE or standard input\n"
        "('-' or no argument), rolls samples up per flow and writes ms_raw_samples,\n"
        "ms_flow_rollup and ms_data_objects to ClickHouse over HTTP (RowBinary).\n"
        "\n"
        "ClickHouse (default URL http://127.0.0.1:8123/):\n",
        out);
    std::fputs(microsentinel::examples::clickhouse_flags_help, out);
    std::fputs(
        "Rows:\n"
        "  --host NAME             host column (default: the capture's host name)\n"
        "  --rollup-window MS      rollup window (default 1000)\n"
        "  --data-objects MODE     auto: resolve data addresses via /proc when the capture's host is\n"
        "                          this host (default); on; off\n"
        "  --help                  this text\n"
        "\n"
        "Credentials are never taken from the command line or the URL.\n"
        "Exit codes: 0 everything delivered; 1 bad flags or configuration, or the spool directory is\n"
        "unusable (not writable, disk full); 2 malformed or unreadable\n"
        "capture (the message names the byte offset; rows before it were written); 3 batches remain\n"
        "in the spool (server unreachable, wrong URL or credentials: they are retried on the next\n"
        "start); 4 rows were rejected by the server (kept in SPOOL/quarantine) or dropped because\n"
        "their table does not exist (run the migrations).\n",
        out);
}

volatile std::sig_atomic_t stop_requested = 0;

void on_signal(int) { stop_requested = 1; }

struct options {
    microsentinel::examples::clickhouse_flags clickhouse;
    std::string input = "-";
    std::string host;
    std::uint64_t rollup_window_ms = 1000;
    std::string data_objects = "auto";
};

[[noreturn]] void usage_error(const std::string& why)
{
    std::fprintf(stderr, "micro_sentinel_ch_writer: %s (see --help)\n", why.c_str());
    std::exit(exit_usage);
}

options parse_args(int argc, char** argv)
{
    using microsentinel::examples::parse_positive;
    options o;
    bool input_seen = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        auto value = [&]() -> std::string_view {
            if (i + 1 >= argc)
                usage_error(std::string(a) + " needs a value");
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            usage(stdout);
            std::exit(exit_ok);
        } else if (microsentinel::examples::parse_clickhouse_flag(a, value, o.clickhouse)) {
        } else if (a == "--host") {
            o.host = value();
        } else if (a == "--rollup-window") {
            o.rollup_window_ms = parse_positive(a, value());
        } else if (a == "--data-objects") {
            o.data_objects = value();
            if (o.data_objects != "auto" && o.data_objects != "on" && o.data_objects != "off")
                usage_error("--data-objects takes auto, on or off");
        } else if (a.starts_with("--")) {
            usage_error("unknown option " + std::string(a));
        } else if (!input_seen) {
            o.input = a;
            input_seen = true;
        } else {
            usage_error("more than one capture given");
        }
    }
    if (o.clickhouse.writer.urls.empty())
        o.clickhouse.writer.urls.push_back("http://127.0.0.1:8123/");
    return o;
}

// The input as a FILE* that, while no bytes arrive, calls on_idle every
// flush interval: batches leave on time even when the input is a quiet pipe.
// A stop signal reads as end of input.
struct idle_input {
    int fd;
    int poll_ms;
    void (*on_idle)(void*) = nullptr;
    void* idle_context = nullptr;

    static ssize_t read(void* cookie, char* buf, size_t size)
    {
        auto* self = static_cast<idle_input*>(cookie);
        for (;;) {
            if (stop_requested)
                return 0;
            pollfd p{self->fd, POLLIN, 0};
            int r = ::poll(&p, 1, self->poll_ms);
            if (r < 0 && errno != EINTR)
                return -1;
            if (r > 0) {
                ssize_t n = ::read(self->fd, buf, size);
                if (n < 0 && errno == EINTR)
                    continue;
                return n;
            }
            if (self->on_idle)
                self->on_idle(self->idle_context);
        }
    }
};

std::string this_host_name()
{
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) != 0)
        return {};
    return name;
}

struct pipeline {
    ch::writer& out;
    microsentinel::data_object_registry* objects;
    std::uint64_t samples = 0;

    struct rollup_sink {
        ch::writer* out;
        void operator()(std::span<const microsentinel::flow_rollup_row> rows) { out->add(rows); }
    };
    microsentinel::flow_rollup<rollup_sink> rollup;

    pipeline(ch::writer& w, microsentinel::data_object_registry* r, microsentinel::rollup_config config)
        : out(w), objects(r), rollup(config, rollup_sink{&w})
    {
    }

    void on_sample(const microsentinel::sample& s)
    {
        std::uint64_t object = 0;
        if (objects && s.data_addr != 0) {
            object = objects->resolve(s.pid, s.data_addr);
            for (const auto& row : objects->take_new_objects())
                out.add(row);
        }
        out.add(s, object);
        rollup.add(s, s.ip, object);
        if ((++samples & 1023) == 0)
            out.poll();
    }
    // A live capture of this host: sample times are this host's
    // CLOCK_MONOTONIC, so an idle input still closes rollup windows.
    bool live = false;

    static void idle(void* self_ptr)
    {
        auto* self = static_cast<pipeline*>(self_ptr);
        if (self->live) {
            timespec now{};
            clock_gettime(CLOCK_MONOTONIC, &now);
            self->rollup.advance_time(std::uint64_t(now.tv_sec) * 1'000'000'000u + std::uint64_t(now.tv_nsec));
        }
        self->out.poll();
    }

    void on_layout(const microsentinel::negotiated_layout&) {}
    void on_counters(const microsentinel::collector_counters&) {}
};

} // namespace

int main(int argc, char** argv)
{
    options o;
    try {
        o = parse_args(argc, argv);
    } catch (const microsentinel::examples::usage_error& e) {
        usage_error(e.what());
    }
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGPIPE, SIG_IGN);

    int fd = STDIN_FILENO;
    std::string source = "<stdin>";
    if (o.input != "-") {
        fd = ::open(o.input.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            std::fprintf(stderr, "micro_sentinel_ch_writer: cannot open capture %s: %s\n", o.input.c_str(), std::strerror(errno));
            return exit_bad_input;
        }
        source = o.input;
    }
    idle_input input{fd, int(std::max<std::uint64_t>(o.clickhouse.writer.flush_interval.count(), 10))};
    cookie_io_functions_t io{&idle_input::read, nullptr, nullptr, nullptr};
    std::FILE* in = fopencookie(&input, "r", io);

    int status = exit_ok;
    std::optional<ch::writer> writer;
    std::optional<microsentinel::data_object_registry> registry;
    std::uint64_t decoded = 0, skipped = 0;
    try {
        o.clickhouse.writer.client.auth = ch::load_credentials(o.clickhouse.user, o.clickhouse.password_file);
        microsentinel::capture_reader reader(in, source);
        const auto& header = reader.header();
        o.clickhouse.writer.host = o.host.empty() ? header.host : o.host;
        o.clickhouse.writer.boot_to_wall_ns = header.boot_to_wall_ns;
        o.clickhouse.writer.log = [](std::string_view line) {
            std::fprintf(stderr, "micro_sentinel_ch_writer: %.*s\n", int(line.size()), line.data());
        };
        o.clickhouse.writer.interrupted = [] { return stop_requested != 0; };
        writer.emplace(o.clickhouse.writer);
        bool same_host = header.host == this_host_name();
        if (o.data_objects == "on" || (o.data_objects == "auto" && same_host))
            registry.emplace(o.clickhouse.writer.host);
        microsentinel::rollup_config rc;
        rc.window_ns = o.rollup_window_ms * 1'000'000;
        rc.boot_to_wall_ns = header.boot_to_wall_ns;
        pipeline p(*writer, registry ? &*registry : nullptr, rc);
        struct stat st{};
        p.live = same_host && fstat(fd, &st) == 0 && !S_ISREG(st.st_mode);
        input.on_idle = &pipeline::idle;
        input.idle_context = &p;
        writer->poll(); // replays what an earlier run left in the spool
        try {
            auto stats = microsentinel::replay(reader, p);
            decoded = stats.decoded;
            skipped = stats.skipped_total();
        } catch (const microsentinel::capture_error& e) {
            // A stop signal ends the input wherever it is, possibly inside a frame.
            if (stop_requested) {
                std::fprintf(stderr, "micro_sentinel_ch_writer: stopped by a signal; writing what was read\n");
            } else {
                std::fprintf(stderr, "micro_sentinel_ch_writer: %s\n", e.what());
                status = exit_bad_input;
            }
        } catch (const microsentinel::layout_error& e) {
            std::fprintf(stderr, "micro_sentinel_ch_writer: %s at byte offset %llu: %s\n", source.c_str(),
                         static_cast<unsigned long long>(reader.offset()), e.what());
            status = exit_bad_input;
        }
        p.rollup.flush();
        input.on_idle = nullptr; // `p` ends here; the final drain below does not read input
        decoded = std::max(decoded, p.samples);
    } catch (const microsentinel::capture_error& e) {
        std::fprintf(stderr, "micro_sentinel_ch_writer: %s\n", e.what());
        return exit_bad_input;
    } catch (const microsentinel::layout_error& e) {
        std::fprintf(stderr, "micro_sentinel_ch_writer: %s: %s\n", source.c_str(), e.what());
        return exit_bad_input;
    } catch (const ch::config_error& e) {
        std::fprintf(stderr, "micro_sentinel_ch_writer: %s\n", e.what());
        return exit_usage;
    } catch (const ch::writer_error& e) {
        std::fprintf(stderr, "micro_sentinel_ch_writer: %s\n", e.what());
        return exit_usage;
    } catch (const ch::spool_error& e) {
        std::fprintf(stderr, "micro_sentinel_ch_writer: %s\n", e.what());
        return exit_usage;
    }

    bool delivered = writer->drain(std::chrono::milliseconds(o.clickhouse.drain_timeout_ms));
    const auto& s = writer->stats();
    std::fprintf(stderr,
                 "micro_sentinel_ch_writer: %llu samples read (%llu skipped by the decoder); rows sent: %llu raw, %llu "
                 "rollup, %llu data objects; %llu batches spooled, %llu replayed, %llu quarantined (%llu rows), %llu "
                 "rows dropped; spool holds %zu batches\n",
                 (unsigned long long)decoded, (unsigned long long)skipped, (unsigned long long)s.rows_sent[0],
                 (unsigned long long)s.rows_sent[1], (unsigned long long)s.rows_sent[2],
                 (unsigned long long)s.batches_spooled, (unsigned long long)s.batches_replayed,
                 (unsigned long long)s.quarantined_batches, (unsigned long long)s.quarantined_rows,
                 (unsigned long long)s.dropped_rows, writer->pending().size());
    if (!delivered) {
        std::fprintf(stderr,
                     "micro_sentinel_ch_writer: %zu batches (%llu bytes) could not be delivered and stay in %s; they are "
                     "sent on the next start. Last error: %s\n",
                     writer->pending().size(), (unsigned long long)writer->pending().bytes(),
                     writer->pending().dir().c_str(), writer->last_error().c_str());
        if (status == exit_ok)
            status = exit_undelivered;
    }
    if (status == exit_ok && (s.quarantined_rows > 0 || s.dropped_rows > 0 || s.corrupt_spool_files > 0))
        status = exit_lost_rows;
    std::fclose(in);
    return status;
}
