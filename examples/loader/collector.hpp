#pragma once
// Loading the collector object, attaching it and pinning it.
#include <string>
#include <vector>

#include "options.hpp"

namespace microsentinel::loader {

struct load_result {
    std::string layout;               // "v1" / "v2", negotiated from the object's BTF
    bool hardware_pmu = false;
    std::vector<std::string> events;  // names of the events attached
    int cpus = 0;                     // CPUs the events were opened on
    bool replaced = false;            // a pinned collector was replaced
};

// Everything is pinned under o.pin_dir on success; on failure nothing new is
// pinned and a collector already pinned there keeps running. Throws loader_error.
load_result load_collector(const options& o);

// Stops a collector's sampling program from emitting, through its config map:
// its links outlive their pins by an RCU grace period.
void pause_collector(int config_fd);

// Removes every pin under pin_dir (detaching the collector); returns how many.
int unload_collector(const std::string& pin_dir);

} // namespace microsentinel::loader
