#include "options.hpp"

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace microsentinel::agent {

namespace {

constexpr const char* usage_head = R"(Usage: micro_sentinel_agent [OPTIONS]
Reads the samples of the MicroSentinel collector pinned by micro_sentinel_loader
(or a capture), attributes them to flows and data objects, rolls them up per
flow, serves Prometheus metrics and, with --clickhouse-url, writes ClickHouse.
When the pinned collector is replaced (upgrade or rollback) the agent follows
it and renegotiates the sample layout from the new program's BTF.
At the end it prints the costliest flows per direction.

Source:
  --pin-dir DIR           collector pinned at DIR (default /sys/fs/bpf/micro_sentinel)
  --capture FILE          replay a capture (docs/capture-format.md) instead; '-' = stdin
  --duration S            stop after S seconds (default 0: until SIGINT/SIGTERM or the
                          end of the capture)
Metrics:
  --listen HOST:PORT      serve /metrics here (default 127.0.0.1:9105); 'off' = no server
  --top-k N               flows exported per direction and event; the rest is flow="other"
                          (default 50)
  --staleness S           drop a flow's series after S seconds unseen (default 300)
Rollup and data objects:
  --rollup-window MS      rollup window (default 1000)
  --rollup-max-entries N  rollup table size; a full table is emitted early (default 65536)
  --data-objects on|off   resolve data addresses to objects via /proc (default on)
  --host NAME             host column and label (default: this host's name, or the
                          capture's for --capture)
  --summary N             flows per direction in the final summary (default 10, 0 = none)
ClickHouse (off unless --clickhouse-url is given):
)";

constexpr const char* usage_tail = R"(  --help                  this text

Credentials are never taken from the command line or the URL.
Exit status: 0 done; 1 runtime error (no collector pinned, unreadable capture,
address in use); 2 bad options; 3 ClickHouse batches remain in the spool (they
are sent on the next start).
)";

double parse_seconds(std::string_view flag, const char* text)
{
    char* end = nullptr;
    double v = std::strtod(text, &end);
    if (end == text || *end != '\0' || !(v >= 0))
        throw examples::usage_error(std::string(flag) + " needs a non-negative number of seconds, got '" + text + "'");
    return v;
}

} // namespace

std::optional<options> parse_options(int argc, char** argv)
{
    using examples::parse_number;
    using examples::parse_positive;
    options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc)
                throw examples::usage_error(std::string(arg) + " needs a value (see --help)");
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") {
            std::fputs(usage_head, stdout);
            std::fputs(examples::clickhouse_flags_help, stdout);
            std::fputs(usage_tail, stdout);
            return std::nullopt;
        } else if (examples::parse_clickhouse_flag(arg, value, o.clickhouse)) {
        } else if (arg == "--pin-dir") {
            o.pin_dir = value();
        } else if (arg == "--capture") {
            o.capture = value();
        } else if (arg == "--duration") {
            o.duration_s = parse_seconds(arg, value());
        } else if (arg == "--listen") {
            std::string listen = value();
            o.metrics = listen != "off";
            o.http.listen = listen;
        } else if (arg == "--top-k") {
            o.metrics_config.top_k = parse_positive(arg, value());
        } else if (arg == "--staleness") {
            o.metrics_config.staleness = std::chrono::seconds(parse_positive(arg, value()));
        } else if (arg == "--rollup-window") {
            o.rollup_window_ms = parse_positive(arg, value());
        } else if (arg == "--rollup-max-entries") {
            o.rollup_max_entries = parse_positive(arg, value());
        } else if (arg == "--data-objects") {
            std::string_view v = value();
            if (v != "on" && v != "off")
                throw examples::usage_error("--data-objects takes on or off, got '" + std::string(v) + "'");
            o.data_objects = v == "on";
        } else if (arg == "--host") {
            o.host = value();
        } else if (arg == "--summary") {
            o.summary_flows = parse_number(arg, value());
        } else {
            throw examples::usage_error("unknown argument '" + std::string(arg) + "' (see --help)");
        }
    }
    return o;
}

} // namespace microsentinel::agent
