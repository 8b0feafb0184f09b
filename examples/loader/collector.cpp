#include "collector.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <string_view>

#include "error.hpp"
#include "microsentinel/btf_layout.hpp"
#include "ms_collector.h"
#include "perf_events.hpp"
#include "pin_dir.hpp"
#include "pinned.hpp"
#include "preflight.hpp"

namespace microsentinel::loader {

namespace {

struct object_closer {
    void operator()(bpf_object* o) const noexcept { bpf_object__close(o); }
};
struct link_destroyer {
    void operator()(bpf_link* l) const noexcept { bpf_link__destroy(l); }
};
using object_ptr = std::unique_ptr<bpf_object, object_closer>;
using link_ptr = std::unique_ptr<bpf_link, link_destroyer>;

// Removes the staging directory unless the load went through.
class staging_dir {
public:
    explicit staging_dir(std::string path) : path_(std::move(path))
    {
        remove_pins(path_);
        if (mkdir(path_.c_str(), 0700) != 0)
            throw loader_error("cannot create " + path_ + ": " + errno_text(errno),
                               "check that the bpf filesystem is writable (run as root)");
    }
    ~staging_dir()
    {
        if (!committed_) {
            try {
                remove_pins(path_);
            } catch (const loader_error&) {
                // The original error is the one reported; this one names a path left behind only in
                // a directory the next load clears anyway.
            }
        }
    }
    staging_dir(const staging_dir&) = delete;
    staging_dir& operator=(const staging_dir&) = delete;
    const std::string& path() const noexcept { return path_; }
    void commit() noexcept { committed_ = true; }

private:
    std::string path_;
    bool committed_ = false;
};

// Packet and softirq hooks, by their tp_btf names; the raw_tp ones add "_raw".
constexpr const char* hook_programs[] = {"ms_rx", "ms_tx", "ms_rx_begin", "ms_rx_end"};

bpf_program* find_program(bpf_object* obj, const char* name, const std::string& object_path)
{
    bpf_program* p = bpf_object__find_program_by_name(obj, name);
    if (!p)
        throw loader_error(object_path + " has no program " + name + ", so it is not a MicroSentinel collector",
                           "load bpf/micro_sentinel_kern.bpf.o (make -C bpf)");
    return p;
}

void pin_link(bpf_link* link, const std::string& path)
{
    if (int err = bpf_link__pin(link, path.c_str()); err != 0)
        throw loader_error("cannot pin link " + path + ": " + errno_text(err),
                           "check that the kernel supports BPF links (5.7 or later) and bpffs is writable");
}

void load_object(bpf_object* obj, const std::string& object_path)
{
    int err = bpf_object__load(obj);
    if (err == 0)
        return;
    if (err == -EPERM || err == -EACCES)
        throw loader_error("the kernel refused to load " + object_path + ": " + errno_text(err),
                           "run as root, or grant CAP_BPF and CAP_PERFMON");
    throw loader_error("cannot load " + object_path + ": " + errno_text(err),
                       "run again with --verbose to see the verifier log; rebuild the object on this kernel "
                       "(make -C bpf)");
}

} // namespace

load_result load_collector(const options& o)
{
    require_kernel_btf();
    require_bpf_capabilities(true);
    if (access(o.object.c_str(), R_OK) != 0)
        throw loader_error("cannot read collector object " + o.object + ": " + errno_text(errno),
                           "build it (make -C bpf, or the CMake build) or pass --object PATH");

    load_result result;
    try {
        result.layout = std::string(negotiate_from_object_file(o.object).name());
    } catch (const layout_error& e) {
        throw loader_error(std::string("unknown sample layout: ") + e.what(),
                           "load a collector built from this release's bpf/ (make -C bpf; make -C bpf legacy "
                           "for layout v1)");
    }
    event_choice events = choose_events(o.events);
    result.hardware_pmu = events.hardware_pmu;
    if (o.lbr && std::none_of(events.events.begin(), events.events.end(), [](const event_spec& e) { return e.hardware; }))
        throw loader_error("--lbr needs hardware events, and " +
                               std::string(events.hardware_pmu ? "none was asked for" : "this machine has no PMU"),
                           events.hardware_pmu ? "add --events cycles (or auto)" : "drop --lbr");
    ensure_bpffs(o.pin_dir);

    object_ptr obj(bpf_object__open_file(o.object.c_str(), nullptr));
    if (!obj)
        throw loader_error("cannot open " + o.object + ": " + errno_text(errno),
                           "pass a BPF object built by make -C bpf");
    const bool raw = o.hook == "raw_tp";
    std::vector<bpf_program*> hooks;
    std::vector<std::string> hook_names;
    for (const char* name : hook_programs) {
        const std::string typed = name, untyped = typed + "_raw";
        const bool wanted = o.softirq_hooks || !std::string_view(name).starts_with("ms_rx_");
        bpf_program* chosen = find_program(obj.get(), (raw ? untyped : typed).c_str(), o.object);
        bpf_program__set_autoload(find_program(obj.get(), (raw ? typed : untyped).c_str(), o.object), false);
        bpf_program__set_autoload(chosen, wanted);
        if (wanted) {
            hooks.push_back(chosen);
            hook_names.push_back(typed.substr(3));
        }
    }
    bpf_program* on_sample = find_program(obj.get(), MS_PROG_SAMPLE, o.object);
    load_object(obj.get(), o.object);

    bpf_map* config_map = bpf_object__find_map_by_name(obj.get(), MS_MAP_CONFIG);
    if (!config_map)
        throw loader_error(o.object + " has no map " MS_MAP_CONFIG, "load bpf/micro_sentinel_kern.bpf.o");
    ms_config cfg{};
    cfg.budget_per_sec = o.budget;
    cfg.burst = o.burst ? o.burst : (o.budget / 10 ? o.budget / 10 : 1);
    cfg.flow_ttl_ns = o.flow_ttl_us * 1000;
    cfg.skid_ns = o.skid_ns;
    cfg.lbr = o.lbr;
    __u32 key = 0;
    if (bpf_map_update_elem(bpf_map__fd(config_map), &key, &cfg, BPF_ANY) != 0)
        throw loader_error("cannot configure the collector: " + errno_text(errno), "run as root");

    staging_dir staging(o.pin_dir + "_staging");
    std::vector<link_ptr> links;
    for (std::size_t i = 0; i < hooks.size(); ++i) {
        links.emplace_back(bpf_program__attach(hooks[i]));
        if (!links.back())
            throw loader_error(std::string("cannot attach ") + bpf_program__name(hooks[i]) + ": " +
                                   errno_text(errno),
                               raw ? "check that the kernel has the netif_receive_skb, net_dev_queue, "
                                     "softirq_entry and softirq_exit tracepoints"
                                   : "use --hook raw_tp on kernels without tp_btf support");
        pin_link(links.back().get(), staging.path() + "/link_" + hook_names[i]);
    }

    const sampling rates{o.sample_rate_hz, o.fault_period, o.lbr};
    const int cpus = libbpf_num_possible_cpus();
    for (const auto& ev : events.events) {
        int opened = 0;
        for (int cpu = 0; cpu < cpus; ++cpu) {
            int fd = open_event(ev, cpu, rates);
            if (fd < 0)
                continue;
            // LIBBPF_OPTS is a C compound literal; pedantic C++ spells it out.
            bpf_perf_event_opts opts{};
            opts.sz = sizeof opts;
            opts.bpf_cookie = ev.pmu_event;
            links.emplace_back(bpf_program__attach_perf_event_opts(on_sample, fd, &opts));
            if (!links.back()) {
                int err = errno;
                close(fd);
                throw loader_error("cannot attach " MS_PROG_SAMPLE " to " + ev.name + " on CPU " +
                                       std::to_string(cpu) + ": " + errno_text(err),
                                   "use a kernel with BPF perf links and bpf cookies (5.15 or later)");
            }
            pin_link(links.back().get(), staging.path() + "/link_" + ev.name + "_cpu" + std::to_string(cpu));
            ++opened;
        }
        result.cpus = opened;
        result.events.push_back(ev.name);
    }

    bpf_program* prog;
    bpf_object__for_each_program(prog, obj.get())
    {
        if (!bpf_program__autoload(prog))
            continue;
        std::string path = staging.path() + "/" + bpf_program__name(prog);
        if (int err = bpf_program__pin(prog, path.c_str()); err != 0)
            throw loader_error("cannot pin program " + path + ": " + errno_text(err), "check that bpffs is writable");
    }
    bpf_map* map;
    bpf_object__for_each_map(map, obj.get())
    {
        if (bpf_map__is_internal(map))
            continue;
        std::string path = staging.path() + "/" + bpf_map__name(map);
        if (int err = bpf_map__pin(map, path.c_str()); err != 0)
            throw loader_error("cannot pin map " + path + ": " + errno_text(err), "check that bpffs is writable");
    }

    result.replaced = is_pinned(o.pin_dir);
    unique_fd old_config(result.replaced ? bpf_obj_get(pinned_path(o.pin_dir, MS_MAP_CONFIG).c_str()) : -1);
    install_staged(staging.path(), o.pin_dir);
    staging.commit();
    if (old_config)
        result.warning = pause_collector(old_config.get());
    // The pins own the links now; libbpf's detach would disable the perf events.
    for (auto& link : links)
        bpf_link__disconnect(link.get());
    return result;
}

std::string pause_collector(int config_fd)
{
    try {
        ms_config cfg = read_config(config_fd);
        cfg.paused = 1;
        write_config(config_fd, cfg);
    } catch (const loader_error& e) {
        return std::string("the collector was not paused, its samples stop when the kernel releases its "
                           "links (an RCU grace period): ") + e.what();
    }
    return {};
}

unload_result unload_collector(const std::string& pin_dir)
{
    unload_result r;
    if (unique_fd config{bpf_obj_get(pinned_path(pin_dir, MS_MAP_CONFIG).c_str())})
        r.warning = pause_collector(config.get());
    remove_pins(pin_dir + "_staging");
    r.removed = remove_pins(pin_dir);
    return r;
}

} // namespace microsentinel::loader
