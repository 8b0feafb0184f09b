#include "pinned.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <vector>

#include "error.hpp"

namespace microsentinel::loader {

void unique_fd::reset(int fd) noexcept
{
    if (fd_ >= 0)
        close(fd_);
    fd_ = fd;
}

namespace {

std::uint32_t map_id(int fd)
{
    bpf_map_info info{};
    __u32 len = sizeof info;
    return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

bool prog_uses_map(int prog_fd, std::uint32_t id, std::uint32_t& prog_id)
{
    std::uint32_t ids[64];
    bpf_prog_info info{};
    info.nr_map_ids = 64;
    info.map_ids = reinterpret_cast<std::uintptr_t>(ids);
    __u32 len = sizeof info;
    if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0)
        return false;
    prog_id = info.id;
    for (std::uint32_t i = 0; i < info.nr_map_ids && i < 64; ++i)
        if (ids[i] == id)
            return true;
    return false;
}

} // namespace

std::optional<pinned_collector> open_pinned(const std::string& pin_dir)
{
    pinned_collector c;
    c.sample_prog = unique_fd(bpf_obj_get(pinned_path(pin_dir, MS_PROG_SAMPLE).c_str()));
    c.samples = unique_fd(bpf_obj_get(pinned_path(pin_dir, MS_MAP_SAMPLES).c_str()));
    c.counters = unique_fd(bpf_obj_get(pinned_path(pin_dir, MS_MAP_COUNTERS).c_str()));
    c.config = unique_fd(bpf_obj_get(pinned_path(pin_dir, MS_MAP_CONFIG).c_str()));
    if (!c.sample_prog || !c.samples || !c.counters || !c.config)
        return std::nullopt;
    std::uint32_t counters_id = map_id(c.counters.get());
    c.samples_map_id = map_id(c.samples.get());
    std::uint32_t prog_id = 0;
    if (!prog_uses_map(c.sample_prog.get(), c.samples_map_id, prog_id) ||
        !prog_uses_map(c.sample_prog.get(), counters_id, prog_id))
        return std::nullopt;
    c.prog_id = prog_id;
    return c;
}

std::uint32_t pinned_prog_id(const std::string& pin_dir)
{
    unique_fd fd(bpf_obj_get(pinned_path(pin_dir, MS_PROG_SAMPLE).c_str()));
    if (!fd)
        return 0;
    bpf_prog_info info{};
    __u32 len = sizeof info;
    return bpf_obj_get_info_by_fd(fd.get(), &info, &len) == 0 ? info.id : 0;
}

collector_counters read_counters(int counters_fd)
{
    int cpus = libbpf_num_possible_cpus();
    std::vector<ms_counters> per_cpu(cpus > 0 ? std::size_t(cpus) : 1);
    __u32 key = 0;
    collector_counters sum;
    if (bpf_map_lookup_elem(counters_fd, &key, per_cpu.data()) != 0)
        throw loader_error("cannot read the collector's counters: " + errno_text(errno),
                           "run as root (reading pinned maps needs CAP_BPF)");
    for (const auto& c : per_cpu) {
        sum.emitted += c.emitted;
        sum.throttled += c.throttled;
        sum.ringbuf_full += c.ringbuf_full;
    }
    return sum;
}

ms_config read_config(int config_fd)
{
    bpf_map_info info{};
    __u32 len = sizeof info;
    if (bpf_obj_get_info_by_fd(config_fd, &info, &len) != 0 || info.value_size != sizeof(ms_config))
        throw loader_error("the pinned " MS_MAP_CONFIG " map has " + std::to_string(info.value_size) +
                               "-byte values, not the " + std::to_string(sizeof(ms_config)) +
                               " this loader knows: it belongs to another release",
                           "use the micro_sentinel_loader of the release that loaded it");
    ms_config cfg{};
    __u32 key = 0;
    if (bpf_map_lookup_elem(config_fd, &key, &cfg) != 0)
        throw loader_error("cannot read the collector's configuration: " + errno_text(errno),
                           "run as root (reading pinned maps needs CAP_BPF)");
    return cfg;
}

void write_config(int config_fd, const ms_config& cfg)
{
    __u32 key = 0;
    if (bpf_map_update_elem(config_fd, &key, &cfg, BPF_ANY) != 0)
        throw loader_error("cannot write the collector's configuration: " + errno_text(errno),
                           "run as root (writing pinned maps needs CAP_BPF)");
}

} // namespace microsentinel::loader
