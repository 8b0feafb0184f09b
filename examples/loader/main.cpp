// micro_sentinel_loader: loads, pins, unloads and records the eBPF collector.
#include <bpf/libbpf.h>
#include <unistd.h>

#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <string>

#include "collector.hpp"
#include "error.hpp"
#include "microsentinel/btf_layout.hpp"
#include "options.hpp"
#include "pinned.hpp"
#include "preflight.hpp"
#include "recorder.hpp"

#ifndef MS_INSTALLED_OBJECT
#define MS_INSTALLED_OBJECT "/usr/local/lib/microsentinel/micro_sentinel_kern.bpf.o"
#endif
#ifndef MS_BUILD_OBJECT
#define MS_BUILD_OBJECT MS_INSTALLED_OBJECT
#endif

namespace {

using namespace microsentinel;
using namespace microsentinel::loader;

volatile std::sig_atomic_t exiting = 0;

void on_signal(int) { exiting = 1; }

bool verbose_libbpf = false;

// libbpf's messages (verifier logs) only on --verbose: an error is one line.
int libbpf_print(enum libbpf_print_level level, const char* format, va_list args)
{
    if (!verbose_libbpf || level == LIBBPF_DEBUG)
        return 0;
    return std::vfprintf(stderr, format, args);
}

// The installed object when there is one, else the one of this build tree.
std::string default_object()
{
    return access(MS_INSTALLED_OBJECT, R_OK) == 0 ? MS_INSTALLED_OBJECT : MS_BUILD_OBJECT;
}

int do_load(const options& o)
{
    load_result r = load_collector(o);
    std::string events;
    for (const auto& e : r.events)
        events += (events.empty() ? "" : ",") + e;
    std::printf("micro_sentinel_loader: %s %s (layout %s) at %s; events: %s (%s) on %d CPUs; hooks: %s\n",
                r.replaced ? "replaced the pinned collector with" : "loaded", o.object.c_str(), r.layout.c_str(),
                o.pin_dir.c_str(), r.hardware_pmu ? "hardware" : "software", events.c_str(), r.cpus, o.hook.c_str());
    if (!r.hardware_pmu)
        std::printf("micro_sentinel_loader: no hardware PMU on this machine; sampling software events\n");
    if (!r.warning.empty())
        std::fprintf(stderr, "micro_sentinel_loader: warning: %s\n", r.warning.c_str());
    return 0;
}

int do_unload(const options& o)
{
    require_bpf_capabilities(false);
    unload_result r = unload_collector(o.pin_dir);
    if (!r.warning.empty())
        std::fprintf(stderr, "micro_sentinel_loader: warning: %s\n", r.warning.c_str());
    if (r.removed == 0)
        std::printf("micro_sentinel_loader: nothing was pinned at %s\n", o.pin_dir.c_str());
    else
        std::printf("micro_sentinel_loader: unloaded %s (%d pins removed)\n", o.pin_dir.c_str(), r.removed);
    return 0;
}

int do_record(const options& o)
{
    std::FILE* out = o.record_file == "-" ? stdout : std::fopen(o.record_file.c_str(), "wb");
    if (!out)
        throw loader_error("cannot open " + o.record_file + " for writing: " + errno_text(errno),
                           "pass a writable path to --record, or - for standard output");
    record_result r = record_pinned(o.pin_dir, out, o.duration_s, &exiting);
    if (out != stdout && std::fclose(out) != 0)
        throw loader_error("cannot write " + o.record_file + ": " + errno_text(errno), "check free disk space");
    std::fprintf(stderr, "micro_sentinel_loader: recorded %llu samples, %llu layout changes\n", r.samples,
                 r.layout_changes);
    return 0;
}

pinned_collector require_pinned(const options& o)
{
    require_bpf_capabilities(false);
    auto pins = open_pinned(o.pin_dir);
    if (!pins)
        throw loader_error("no collector is pinned at " + o.pin_dir,
                           "load one first (micro_sentinel_loader, or systemctl start micro-sentinel-bpf)");
    return std::move(*pins);
}

int do_set_budget(const options& o)
{
    pinned_collector pins = require_pinned(o);
    ms_config cfg = read_config(pins.config.get());
    cfg.budget_per_sec = o.budget;
    cfg.burst = o.burst ? o.burst : (o.budget / 10 ? o.budget / 10 : 1);
    write_config(pins.config.get(), cfg);
    std::printf("micro_sentinel_loader: budget set to %llu samples/s per CPU (burst %llu)\n",
                static_cast<unsigned long long>(cfg.budget_per_sec), static_cast<unsigned long long>(cfg.burst));
    return 0;
}

int do_status(const options& o)
{
    pinned_collector pins = require_pinned(o);
    negotiated_layout layout = negotiate_from_prog_fd(pins.sample_prog.get());
    ms_config cfg = read_config(pins.config.get());
    collector_counters c = read_counters(pins.counters.get());
    std::printf("pin_dir %s\nprog_id %u\nlayout %.*s\nbudget_per_sec %llu\nburst %llu\nflow_ttl_ns %llu\n"
                "skid_ns %llu\nemitted %llu\nthrottled %llu\nringbuf_full %llu\n",
                o.pin_dir.c_str(), pins.prog_id, int(layout.name().size()), layout.name().data(),
                static_cast<unsigned long long>(cfg.budget_per_sec), static_cast<unsigned long long>(cfg.burst),
                static_cast<unsigned long long>(cfg.flow_ttl_ns), static_cast<unsigned long long>(cfg.skid_ns),
                static_cast<unsigned long long>(c.emitted), static_cast<unsigned long long>(c.throttled),
                static_cast<unsigned long long>(c.ringbuf_full));
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    try {
        auto parsed = parse_options(argc, argv, default_object());
        if (!parsed)
            return 0;
        const options& o = *parsed;
        verbose_libbpf = o.verbose;
        libbpf_set_print(libbpf_print);
        std::signal(SIGINT, on_signal);
        std::signal(SIGTERM, on_signal);
        switch (o.what) {
        case action::load: return do_load(o);
        case action::unload: return do_unload(o);
        case action::record: return do_record(o);
        case action::set_budget: return do_set_budget(o);
        case action::status: return do_status(o);
        }
    } catch (const usage_error& e) {
        std::fprintf(stderr, "micro_sentinel_loader: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "micro_sentinel_loader: error: %s\n", e.what());
        return 1;
    }
    return 1;
}
