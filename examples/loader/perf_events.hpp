#pragma once
// The sampling events: which ones to open (hardware when the CPU has a PMU,
// software otherwise) and opening one per CPU.
#include <cstdint>
#include <string>
#include <vector>

namespace microsentinel::loader {

struct event_spec {
    std::string name;       // as on the command line: cpu-clock, page-faults, ...
    std::uint32_t pmu_event; // enum ms_pmu_event, handed to the program as the link's bpf cookie
    bool hardware;
};

struct event_choice {
    std::vector<event_spec> events;
    bool hardware_pmu; // whether this machine exposes one
};

// `list` is "auto" or a comma list of event names; throws loader_error when a
// name is unknown or a hardware event is asked for without a PMU.
event_choice choose_events(const std::string& list);

struct sampling {
    std::uint64_t frequency_hz; // cpu-clock and hardware events
    std::uint64_t fault_period; // page-faults
    bool branch_stack;          // hardware events record their branch stack (LBR)
};

// A perf event fd sampling `spec` on `cpu`, or -1 when the CPU is offline.
// Throws loader_error for anything else.
int open_event(const event_spec& spec, int cpu, const sampling& s);

} // namespace microsentinel::loader
