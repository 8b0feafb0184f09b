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
    std::string warning;              // non-empty: the replaced collector could not be paused
};

struct unload_result {
    int removed = 0;     // pins removed
    std::string warning; // non-empty: the collector could not be paused first
};

// Everything is pinned under o.pin_dir on success; on failure nothing new is
// pinned and a collector already pinned there keeps running. Throws loader_error.
load_result load_collector(const options& o);

// Stops a collector's sampling program from emitting, through its config map:
// its links outlive their pins by an RCU grace period. Returns why it could
// not, or an empty string.
std::string pause_collector(int config_fd);

// Pauses the collector, then removes every pin under pin_dir (detaching it).
unload_result unload_collector(const std::string& pin_dir);

} // namespace microsentinel::loader
