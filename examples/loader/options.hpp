#pragma once
// Command line of micro_sentinel_loader: what to do, and with which settings.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace microsentinel::loader {

enum class action { load, unload, record, set_budget, status };

struct options {
    action what = action::load;
    std::string object;                                // empty: the built-in default
    std::string pin_dir = "/sys/fs/bpf/micro_sentinel";
    std::string events = "auto";
    std::uint64_t sample_rate_hz = 997;                // cpu-clock and hardware events, per CPU
    std::uint64_t fault_period = 16;                   // one sample per N page faults
    std::uint64_t budget = 20000;                      // samples/s per CPU; 0 = no limit
    std::uint64_t burst = 0;                           // 0: budget / 10, at least 1
    std::uint64_t flow_ttl_us = 1000;
    std::uint64_t skid_ns = 0;
    std::string hook = "tp_btf";
    bool softirq_hooks = true;
    bool lbr = false;                                  // branch stacks with hardware events                         // end rx contexts with their NET_RX softirq
    std::string record_file;
    double duration_s = 0;                             // 0: until SIGINT/SIGTERM
    bool verbose = false;
};

class usage_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

std::string usage_text(const std::string& default_object);

// Throws usage_error naming the bad argument. nullopt: --help was printed.
std::optional<options> parse_options(int argc, char** argv, const std::string& default_object);

} // namespace microsentinel::loader
