#include "perf_events.hpp"

#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "error.hpp"
#include "microsentinel/ms_sample.h"

namespace microsentinel::loader {

namespace {

struct known_event {
    const char* name;
    ms_pmu_event id;
    std::uint32_t type;
    std::uint64_t config;
};

constexpr known_event known_events[] = {
    {"cpu-clock", MS_EVT_CPU_CLOCK, PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK},
    {"page-faults", MS_EVT_PAGE_FAULTS, PERF_TYPE_SOFTWARE, PERF_COUNT_SW_PAGE_FAULTS},
    {"cycles", MS_EVT_CYCLES, PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES},
    {"llc-misses", MS_EVT_LLC_MISSES, PERF_TYPE_HARDWARE, PERF_COUNT_HW_CACHE_MISSES},
    {"branch-misses", MS_EVT_BRANCH_MISSES, PERF_TYPE_HARDWARE, PERF_COUNT_HW_BRANCH_MISSES},
};

const known_event* find_event(const std::string& name)
{
    for (const auto& e : known_events)
        if (name == e.name)
            return &e;
    return nullptr;
}

int perf_event_open(perf_event_attr* attr, int cpu)
{
    return int(syscall(SYS_perf_event_open, attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC));
}

bool have_hardware_pmu()
{
    perf_event_attr attr{};
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_HARDWARE;
    attr.config = PERF_COUNT_HW_CPU_CYCLES;
    attr.disabled = 1;
    int fd = perf_event_open(&attr, 0);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

} // namespace

event_choice choose_events(const std::string& list)
{
    event_choice choice{{}, have_hardware_pmu()};
    std::string names = list;
    if (list == "auto")
        names = choice.hardware_pmu ? "cycles,llc-misses,branch-misses" : "cpu-clock,page-faults";
    std::size_t at = 0;
    while (at <= names.size()) {
        std::size_t comma = names.find(',', at);
        std::string name = names.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
        at = comma == std::string::npos ? names.size() + 1 : comma + 1;
        const known_event* e = find_event(name);
        if (!e)
            throw loader_error("unknown event '" + name + "' in --events",
                               "use auto or a comma list of cpu-clock, page-faults, cycles, llc-misses, "
                               "branch-misses");
        bool hardware = e->type == PERF_TYPE_HARDWARE;
        if (hardware && !choice.hardware_pmu)
            throw loader_error("event '" + name + "' needs a hardware PMU, which this machine does not expose",
                               "use software events: --events cpu-clock,page-faults (or --events auto)");
        choice.events.push_back({e->name, std::uint32_t(e->id), hardware});
    }
    return choice;
}

int open_event(const event_spec& spec, int cpu, const sampling& s)
{
    const known_event* e = find_event(spec.name);
    perf_event_attr attr{};
    attr.size = sizeof attr;
    attr.type = e->type;
    attr.config = e->config;
    if (e->id == MS_EVT_PAGE_FAULTS) {
        attr.sample_period = s.fault_period;
        attr.sample_type = PERF_SAMPLE_ADDR;
    } else if (e->id == MS_EVT_CPU_CLOCK) {
        attr.sample_period = 1'000'000'000 / s.frequency_hz; // cpu-clock counts nanoseconds
    } else {
        attr.freq = 1;
        attr.sample_freq = s.frequency_hz;
        if (e->id == MS_EVT_LLC_MISSES)
            attr.sample_type = PERF_SAMPLE_ADDR;
    }
    if (s.branch_stack && e->type == PERF_TYPE_HARDWARE) {
        attr.sample_type |= PERF_SAMPLE_BRANCH_STACK;
        attr.branch_sample_type = PERF_SAMPLE_BRANCH_ANY | PERF_SAMPLE_BRANCH_USER | PERF_SAMPLE_BRANCH_KERNEL;
    }
    int fd = perf_event_open(&attr, cpu);
    if (fd >= 0)
        return fd;
    int err = errno;
    if (s.branch_stack && (err == EOPNOTSUPP || err == EINVAL))
        throw loader_error("perf_event_open(" + spec.name + ") with a branch stack failed: " + errno_text(err) +
                               " (the CPU or hypervisor exposes no last branch records)",
                           "drop --lbr");
    if (err == ENODEV)
        return -1;
    if (err == EACCES || err == EPERM)
        throw loader_error("perf_event_open(" + spec.name + ") denied: " + errno_text(err),
                           "run as root or grant CAP_PERFMON (or lower kernel.perf_event_paranoid)");
    if (err == EINVAL && attr.freq)
        throw loader_error("perf_event_open(" + spec.name + ", " + std::to_string(s.frequency_hz) +
                               " Hz) rejected: " + errno_text(err),
                           "pick a --sample-rate below kernel.perf_event_max_sample_rate");
    throw loader_error("perf_event_open(" + spec.name + ") on CPU " + std::to_string(cpu) + " failed: " +
                           errno_text(err),
                       "check that the kernel has perf events (CONFIG_PERF_EVENTS) and try --events cpu-clock");
}

} // namespace microsentinel::loader
