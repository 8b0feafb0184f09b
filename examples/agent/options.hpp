#pragma once
// Command line of micro_sentinel_agent.
#include <microsentinel/prometheus/http_exporter.hpp>
#include <microsentinel/prometheus/metrics_state.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "../common/clickhouse_flags.hpp"

namespace microsentinel::agent {

struct options {
    std::string pin_dir = "/sys/fs/bpf/micro_sentinel";
    std::string capture;          // non-empty: replay this capture ('-' = stdin) instead of the pinned collector
    double duration_s = 0;        // live: stop after this long; 0 = until SIGINT/SIGTERM
    bool metrics = true;
    prometheus::http_options http;
    prometheus::metrics_config metrics_config;
    std::uint64_t rollup_window_ms = 1000;
    std::uint64_t rollup_max_entries = 65536;
    bool data_objects = true;
    std::string host;             // default: this host's name (live) or the capture's
    std::size_t summary_flows = 10;
    examples::clickhouse_flags clickhouse; // no --clickhouse-url: no ClickHouse
};

// nullopt: --help was printed. Throws examples::usage_error.
std::optional<options> parse_options(int argc, char** argv);

} // namespace microsentinel::agent
