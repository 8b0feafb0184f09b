#include "options.hpp"

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace microsentinel::loader {

std::string usage_text(const std::string& default_object)
{
    return "Usage: micro_sentinel_loader [ACTION] [OPTIONS]\n"
           "Loads the MicroSentinel eBPF collector, attaches it and pins its programs, maps and\n"
           "links so that it keeps running after this program exits. Loading over a pinned\n"
           "collector replaces it (upgrade or rollback); a recording consumer follows the swap.\n"
           "\n"
           "Actions (default: load):\n"
           "  --unload            remove everything pinned under the pin directory\n"
           "  --record FILE       record the pinned collector's samples as a capture (docs/capture-format.md)\n"
           "                      into FILE, '-' for standard output\n"
           "  --set-budget N      set the pinned collector's per-CPU budget to N samples/s (0 = no limit)\n"
           "  --status            print the pinned collector's program, layout and counters\n"
           "\n"
           "Options:\n"
           "  --object PATH       collector object to load (default: " + default_object + ")\n"
           "  --pin-dir DIR       pin directory on a bpf filesystem, which is mounted at DIR's parent\n"
           "                      when that is an empty directory (default: /sys/fs/bpf/micro_sentinel)\n"
           "  --events LIST       auto, or a comma list of cpu-clock, page-faults, cycles, llc-misses,\n"
           "                      branch-misses; auto = cycles,llc-misses,branch-misses on a hardware PMU,\n"
           "                      else cpu-clock,page-faults (default: auto)\n"
           "  --sample-rate HZ    samples/s per CPU: cpu-clock fires every 1e9/HZ ns of CPU time; hardware\n"
           "                      events use it as their sampling frequency (default: 997)\n"
           "  --fault-period N    sample one in N page faults (default: 16)\n"
           "  --lbr               record each hardware sample's branch stack (last branch records) in\n"
           "                      ms_sample.lbr; needs hardware events\n"
           "  --budget N          samples/s per CPU the token bucket lets through, 0 = no limit (default: 20000)\n"
           "  --burst N           token bucket depth in samples (default: budget/10, at least 1)\n"
           "  --flow-ttl-us N     a packet's flow context is attributed for N us (default: 1000)\n"
           "  --skid-ns N         ignore flow contexts younger than N ns at a sample (default: 0)\n"
           "  --hook KIND         packet hooks: tp_btf or raw_tp (default: tp_btf)\n"
           "  --softirq-hooks on|off\n"
           "                      on: a flow context set while receiving holds until its NET_RX softirq\n"
           "                      ends, then the CPU's previous context is current again (two more hooks,\n"
           "                      ~75 ns per softirq); off: it holds until the next packet or the TTL\n"
           "                      (default: on)\n"
           "  --duration S        with --record: seconds to record, 0 = until SIGINT/SIGTERM (default: 0)\n"
           "  --verbose           show libbpf's messages (verifier log on load failures)\n"
           "  --help              show this help\n";
}

namespace {

std::uint64_t parse_u64(std::string_view flag, const char* text)
{
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-')
        throw usage_error(std::string(flag) + " needs a non-negative integer, got '" + text + "'");
    return v;
}

double parse_seconds(std::string_view flag, const char* text)
{
    char* end = nullptr;
    double v = std::strtod(text, &end);
    if (end == text || *end != '\0' || !(v >= 0))
        throw usage_error(std::string(flag) + " needs a non-negative number of seconds, got '" + text + "'");
    return v;
}

} // namespace

std::optional<options> parse_options(int argc, char** argv, const std::string& default_object)
{
    options o;
    int actions = 0;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc)
                throw usage_error(std::string(arg) + " needs a value (see --help)");
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") {
            std::fputs(usage_text(default_object).c_str(), stdout);
            return std::nullopt;
        } else if (arg == "--unload") {
            o.what = action::unload, ++actions;
        } else if (arg == "--record") {
            o.what = action::record, ++actions;
            o.record_file = value();
        } else if (arg == "--set-budget") {
            o.what = action::set_budget, ++actions;
            o.budget = parse_u64(arg, value());
        } else if (arg == "--status") {
            o.what = action::status, ++actions;
        } else if (arg == "--object") {
            o.object = value();
        } else if (arg == "--pin-dir") {
            o.pin_dir = value();
        } else if (arg == "--events") {
            o.events = value();
        } else if (arg == "--sample-rate") {
            o.sample_rate_hz = parse_u64(arg, value());
        } else if (arg == "--fault-period") {
            o.fault_period = parse_u64(arg, value());
        } else if (arg == "--budget") {
            o.budget = parse_u64(arg, value());
        } else if (arg == "--burst") {
            o.burst = parse_u64(arg, value());
        } else if (arg == "--flow-ttl-us") {
            o.flow_ttl_us = parse_u64(arg, value());
        } else if (arg == "--skid-ns") {
            o.skid_ns = parse_u64(arg, value());
        } else if (arg == "--hook") {
            o.hook = value();
            if (o.hook != "tp_btf" && o.hook != "raw_tp")
                throw usage_error("--hook must be tp_btf or raw_tp, got '" + o.hook + "'");
        } else if (arg == "--softirq-hooks") {
            std::string_view v = value();
            if (v != "on" && v != "off")
                throw usage_error("--softirq-hooks must be on or off, got '" + std::string(v) + "'");
            o.softirq_hooks = v == "on";
        } else if (arg == "--duration") {
            o.duration_s = parse_seconds(arg, value());
        } else if (arg == "--lbr") {
            o.lbr = true;
        } else if (arg == "--verbose") {
            o.verbose = true;
        } else {
            throw usage_error("unknown argument '" + std::string(arg) + "' (see --help)");
        }
    }
    if (actions > 1)
        throw usage_error("--unload, --record, --set-budget and --status are separate actions; give one");
    if (o.sample_rate_hz == 0)
        throw usage_error("--sample-rate must be at least 1");
    if (o.fault_period == 0)
        throw usage_error("--fault-period must be at least 1");
    while (o.pin_dir.size() > 1 && o.pin_dir.back() == '/')
        o.pin_dir.pop_back();
    if (o.object.empty())
        o.object = default_object;
    return o;
}

} // namespace microsentinel::loader
