#pragma once
// Rows in the shape of the ClickHouse tables (migrations/): what the rollup and
// the data-object registry produce and the writer and exporter consume.
#include <cstdint>
#include <string>

#include "sample.hpp"

namespace microsentinel {

// One row of ms_flow_rollup.
struct flow_rollup_row {
    std::uint64_t window_start_ns; // wall-clock ns if the rollup was given a boot-to-wall offset
    std::uint64_t flow_id;
    direction dir;
    std::uint32_t pmu_event;
    std::uint16_t numa_node;
    std::uint64_t function;       // caller-resolved function id (the sample's ip by default)
    std::uint64_t data_object_id; // 0 when the address belongs to no known object
    std::uint64_t samples;
    double norm_cost;             // sum of weight / max(gso_segs, 1) * sampling scale

    friend bool operator==(const flow_rollup_row&, const flow_rollup_row&) = default;
};

// One row of ms_data_objects.
struct data_object_row {
    std::uint64_t object_id;
    std::string host;
    std::string mapping;     // "[heap]", "[stack]", a file path, "[anon]" or an explicit name
    std::uint64_t base;
    std::uint64_t size;
    std::string permissions; // as in /proc/<pid>/maps, e.g. "rw-p"

    friend bool operator==(const data_object_row&, const data_object_row&) = default;
};

} // namespace microsentinel
