#pragma once
// A collector pinned under a pin directory, opened by path: what --record,
// --status and --set-budget work on, and what the tests inspect.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "microsentinel/capture.hpp"
#include "ms_collector.h"

namespace microsentinel::loader {

class unique_fd {
public:
    unique_fd() = default;
    explicit unique_fd(int fd) : fd_(fd) {}
    unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& o) noexcept
    {
        reset(std::exchange(o.fd_, -1));
        return *this;
    }
    ~unique_fd() { reset(); }
    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    void reset(int fd = -1) noexcept;

private:
    int fd_ = -1;
};

struct pinned_collector {
    unique_fd sample_prog;
    unique_fd samples; // ring buffer
    unique_fd counters;
    unique_fd config;
    std::uint32_t prog_id = 0;
    std::uint32_t samples_map_id = 0;
};

inline std::string pinned_path(const std::string& pin_dir, const char* name) { return pin_dir + "/" + name; }

// nullopt while nothing is pinned, or while a replacement is half visible
// (the pinned ring buffer is not the pinned program's).
std::optional<pinned_collector> open_pinned(const std::string& pin_dir);

// Id of the pinned sampling program; 0 when none is pinned.
std::uint32_t pinned_prog_id(const std::string& pin_dir);

// The per-CPU counters, summed.
collector_counters read_counters(int counters_fd);

ms_config read_config(int config_fd);
void write_config(int config_fd, const ms_config& cfg);

} // namespace microsentinel::loader
