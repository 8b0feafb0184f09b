#pragma once
// The ClickHouse command-line flags that micro_sentinel_ch_writer and
// micro_sentinel_agent share: one parser and one help text for both.
#include <microsentinel/clickhouse/writer.hpp>

#include <chrono>
#include <string>
#include <string_view>

#include "flag_values.hpp"

namespace microsentinel::examples {

struct clickhouse_flags {
    clickhouse_flags() { writer.client.timeout = std::chrono::seconds(30); }

    clickhouse::writer_options writer;
    std::string user;
    std::string password_file;
    std::uint64_t drain_timeout_ms = 30000;
};

inline constexpr const char* clickhouse_flags_help =
    "  --clickhouse-url URL    server URL, e.g. http://127.0.0.1:8123/; repeat for several\n"
    "                          servers: round-robin with failover\n"
    "  --database NAME         database (default: the user's default database)\n"
    "  --user NAME             user (default: $CLICKHOUSE_USER, else 'default')\n"
    "  --password-file FILE    password in the file's first line (default: the file named by\n"
    "                          $CLICKHOUSE_PASSWORD_FILE, else $CLICKHOUSE_PASSWORD, else none)\n"
    "  --ca-file FILE          CA bundle for https URLs; --cert-file/--key-file for mutual TLS\n"
    "  --insecure              do not verify the server certificate\n"
    "  --compress              gzip request bodies\n"
    "  --timeout MS            per-request timeout (default 30000)\n"
    "  --batch-rows N          rows per INSERT at most (default 65536)\n"
    "  --batch-bytes N         bytes per INSERT at most (default 8388608)\n"
    "  --flush-interval MS     send a batch at least this often (default 1000)\n"
    "  --schema-refresh MS     re-read system.columns this often (default 60000; also after a schema error)\n"
    "  --spool-dir DIR         batches not yet delivered, replayed on start\n"
    "                          (default /var/spool/micro-sentinel/clickhouse)\n"
    "  --spool-max-bytes N     when full, reading the input pauses (default 1073741824)\n"
    "  --drain-timeout MS      at the end, keep retrying the spool this long (default 30000)\n";

// Consumes `arg` (and its value through `next_value`) when it is one of the
// ClickHouse flags; false when it is not. Bad values throw usage_error.
template <class NextValue>
bool parse_clickhouse_flag(std::string_view arg, NextValue&& next_value, clickhouse_flags& f)
{
    using std::chrono::milliseconds;
    auto& w = f.writer;
    if (arg == "--clickhouse-url")
        w.urls.emplace_back(next_value());
    else if (arg == "--database")
        w.client.database = next_value();
    else if (arg == "--user")
        f.user = next_value();
    else if (arg == "--password-file")
        f.password_file = next_value();
    else if (arg == "--ca-file")
        w.client.tls.ca_file = next_value();
    else if (arg == "--cert-file")
        w.client.tls.cert_file = next_value();
    else if (arg == "--key-file")
        w.client.tls.key_file = next_value();
    else if (arg == "--insecure")
        w.client.tls.verify = false;
    else if (arg == "--compress")
        w.client.compress = true;
    else if (arg == "--timeout")
        w.client.timeout = milliseconds(parse_number(arg, next_value()));
    else if (arg == "--batch-rows")
        w.batch_rows = parse_number(arg, next_value());
    else if (arg == "--batch-bytes")
        w.batch_bytes = parse_number(arg, next_value());
    else if (arg == "--flush-interval")
        w.flush_interval = milliseconds(parse_number(arg, next_value()));
    else if (arg == "--schema-refresh")
        w.schema_refresh = milliseconds(parse_number(arg, next_value()));
    else if (arg == "--spool-dir")
        w.spool_dir = std::string(next_value());
    else if (arg == "--spool-max-bytes")
        w.spool_max_bytes = parse_number(arg, next_value());
    else if (arg == "--drain-timeout")
        f.drain_timeout_ms = parse_number(arg, next_value());
    else
        return false;
    return true;
}

} // namespace microsentinel::examples
