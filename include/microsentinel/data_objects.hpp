#pragma once
// Data-object registry: resolves (pid, data address) to a data object id,
// 0 meaning "no known object".
//
// Objects come from two sources. Explicit registrations (a name, base and
// size, for one pid or for every process) take precedence; a pid's own
// registrations win over global ones. Automatic registration reads
// /proc/<pid>/maps the first time a pid is seen and keeps its writable heap,
// stack, anonymous and file-backed mappings. Lookup is a hash of the pid and
// a binary search in that pid's sorted regions: O(log n), no /proc access.
//
// What "the same object" means, i.e. what object_id hashes:
// - the host name and the kernel's boot id, and the process instance: pid,
//   start time (field 22 of /proc/<pid>/stat) and the executable's device
//   and inode, so a reused pid, an exec of another program or a reboot never
//   inherits ids (the inode survives the binary being replaced on disk);
// - for a mapping: its kind and path, device, inode and file offset, and its
//   anchor address: the start for everything but the stack, whose start moves
//   down as it grows, so the stack is anchored at its fixed top. The size is
//   not part of the identity: the heap and anonymous regions grow in place.
//   The same mapping read by another registry (an agent restart) gets the
//   same id; an unmapped region mapped again elsewhere is a new object.
// - explicit objects: the name and base, plus the process instance when
//   registered for one pid.
// The id is a 64-bit hash of these, never the raw address, and never 0.
//
// Changes are picked up where they show: a lookup that misses re-reads the
// pid's maps (at most once per min_reread_interval per pid, so a flood of
// misses cannot flood /proc); a hit is answered from memory. A changed start
// time means the pid now names another process; a changed executable or a
// moved stack top means the process called exec; both drop everything known
// about the old image. A process that is gone or unreadable is a counted
// miss and its regions are dropped. Call sweep_exited() now and then (or
// forget_process() on an exit event) to free what exited processes held.
//
// Each object is reported once, as a row of ms_data_objects, through
// take_new_objects(); the row describes the object as first seen (a heap
// that grows later keeps its id and is not reported again).
//
// Not thread-safe: one registry per thread, or a lock around it.
//
// Use:
//   data_object_registry registry(hostname);
//   registry.register_object(0, "shared ring", base, size); // optional
//   const uint64_t object = registry.resolve(sample.pid, sample.data_addr);
//   writer.add(registry.take_new_objects());                // now and then
//   registry.sweep_exited();                                // now and then
#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <sys/stat.h>

#include "detail/hash.hpp"
#include "detail/procfs.hpp"
#include "proc_maps.hpp"
#include "rows.hpp"

namespace microsentinel {

struct registry_config {
    std::string proc_root = "/proc";
    // Least time between two re-reads of one pid's maps triggered by misses.
    std::chrono::nanoseconds min_reread_interval = std::chrono::milliseconds(500);
    // Read /proc/<pid>/maps; false keeps explicit registrations only.
    bool auto_register = true;
};

struct registry_stats {
    std::uint64_t lookups = 0;
    std::uint64_t explicit_hits = 0;
    std::uint64_t auto_hits = 0;
    std::uint64_t misses = 0;             // lookups that found no object
    std::uint64_t non_user_addresses = 0; // misses on 0, low or kernel addresses: never a /proc read
    std::uint64_t maps_reads = 0;         // successful reads of a pid's maps
    std::uint64_t proc_read_failures = 0; // /proc reads that failed (process gone, no permission)
    std::uint64_t rereads_rate_limited = 0;
    std::uint64_t malformed_maps_lines = 0;
    std::uint64_t processes_exited = 0;   // pids whose regions were dropped because /proc was gone
    std::uint64_t processes_replaced = 0; // pid reuse (new start time) or exec (new executable or stack)
    std::uint64_t objects_reported = 0;
};

class data_object_registry {
public:
    explicit data_object_registry(std::string host, registry_config config = {})
        : host_(std::move(host)), config_(std::move(config))
    {
        std::string boot_id;
        if (detail::read_whole_file(config_.proc_root + "/sys/kernel/random/boot_id", boot_id) != 0)
            ++stats_.proc_read_failures;
        while (!boot_id.empty() && (boot_id.back() == '\n' || boot_id.back() == ' '))
            boot_id.pop_back();
        boot_id_ = std::move(boot_id);
    }

    // Below this no process maps anything (vm.mmap_min_addr is at least one
    // page); samples without a data address (software events) carry 0.
    static constexpr std::uint64_t lowest_user_address = 0x1000;
    // At or above this an address is the kernel's or non-canonical (x86-64
    // and arm64 user space ends below 2^56 even with 5-level page tables).
    static constexpr std::uint64_t user_address_end = std::uint64_t{1} << 56;

    // The object holding addr in process pid, or 0.
    std::uint64_t resolve(std::uint32_t pid, std::uint64_t addr)
    {
        ++stats_.lookups;
        if (addr < lowest_user_address || addr >= user_address_end)
            return resolve_explicit_only(pid, addr);
        process_state* p = pid != 0 ? find_or_load(pid) : nullptr;
        if (p != nullptr) {
            if (const region* r = find_region(p->explicit_regions, addr)) {
                ++stats_.explicit_hits;
                return r->id;
            }
        }
        if (const region* r = find_region(global_regions_, addr)) {
            ++stats_.explicit_hits;
            return r->id;
        }
        if (p != nullptr) {
            if (const region* r = find_region(p->auto_regions, addr)) {
                ++stats_.auto_hits;
                return r->id;
            }
            if (config_.auto_register) {
                if (clock::now() - p->last_read >= config_.min_reread_interval) {
                    p = reload(pid);
                    if (p != nullptr) {
                        if (const region* r = find_region(p->explicit_regions, addr)) {
                            ++stats_.explicit_hits;
                            return r->id;
                        }
                        if (const region* r = find_region(p->auto_regions, addr)) {
                            ++stats_.auto_hits;
                            return r->id;
                        }
                    }
                } else {
                    ++stats_.rereads_rate_limited;
                }
            }
        }
        ++stats_.misses;
        return 0;
    }

    // Registers [base, base + size) as `name` for pid, or for every process
    // when pid is 0, and returns its id. Registering the same name and base
    // again returns the same id; overlapping another explicit object of the
    // same scope is an error.
    std::uint64_t register_object(std::uint32_t pid, std::string name, std::uint64_t base, std::uint64_t size)
    {
        if (size == 0 || base + size < base)
            throw std::invalid_argument("data object '" + name + "': size must be > 0 and base + size must not wrap");
        detail::stable_hasher h;
        h.add("microsentinel.data_object.explicit.v1").add(host_);
        std::vector<region>* scope = &global_regions_;
        const region* context = nullptr;
        if (pid != 0) {
            process_state* p = find_or_load(pid);
            if (p == nullptr) { // automatic registration is off: only the process instance is read
                p = &processes_[pid];
                if (const auto instance = read_instance(pid, read_buf_))
                    p->instance = *instance;
                else
                    ++stats_.proc_read_failures;
            }
            add_instance(h.add(boot_id_).add(pid), p->instance);
            scope = &p->explicit_regions;
            context = find_region(p->auto_regions, base);
        }
        const std::uint64_t id = nonzero(h.add(name).add(base).finish());

        region r{base, base + size, id, {}};
        if (context != nullptr)
            r.perms = context->perms;
        auto it = std::lower_bound(scope->begin(), scope->end(), base,
                                   [](const region& x, std::uint64_t b) { return x.base < b; });
        if (it != scope->end() && it->id == id && it->end == r.end)
            return id;
        const bool overlaps_next = it != scope->end() && it->base < r.end;
        const bool overlaps_prev = it != scope->begin() && std::prev(it)->end > base;
        if (overlaps_next || overlaps_prev)
            throw std::invalid_argument("data object '" + name + "' overlaps an object already registered for "
                                        + (pid == 0 ? std::string("every process") : "pid " + std::to_string(pid))
                                        + "; register non-overlapping ranges");
        scope->insert(it, r);
        report(id, name, base, size, r.perms, pid != 0 ? &processes_[pid] : nullptr);
        return id;
    }

    // Re-reads pid's maps now, ignoring the rate limit; false when /proc could
    // not be read (the pid's automatic regions are then dropped).
    bool refresh(std::uint32_t pid)
    {
        if (pid == 0)
            return false;
        process_state* p = reload(pid);
        return p != nullptr && p->readable;
    }

    // Forgets processes that have exited or whose pid now names another
    // process; returns how many were forgotten.
    std::size_t sweep_exited()
    {
        std::size_t dropped = 0;
        std::string stat;
        for (auto it = processes_.begin(); it != processes_.end();) {
            const std::optional<process_instance> instance = read_instance(it->first, stat);
            if (!instance || *instance != it->second.instance) {
                if (!instance && !it->second.auto_regions.empty())
                    ++stats_.processes_exited;
                it = processes_.erase(it);
                ++dropped;
            } else {
                ++it;
            }
        }
        last_ = nullptr;
        return dropped;
    }

    // Drops everything known about pid (e.g. on an exit notification).
    void forget_process(std::uint32_t pid)
    {
        processes_.erase(pid);
        last_ = nullptr;
    }

    // Objects seen since the last call, each reported once.
    std::vector<data_object_row> take_new_objects() { return std::exchange(new_objects_, {}); }

    const registry_stats& stats() const noexcept { return stats_; }
    const std::string& host() const noexcept { return host_; }
    std::size_t tracked_processes() const noexcept { return processes_.size(); }

private:
    using clock = std::chrono::steady_clock;

    struct region {
        std::uint64_t base;
        std::uint64_t end;
        std::uint64_t id;
        std::array<char, 4> perms; // as in maps; zeros when unknown
    };

    // What tells one process image from another under the same pid.
    struct process_instance {
        std::uint64_t start_time = 0; // clock ticks after boot
        std::uint64_t exe_dev = 0;    // 0 when the executable cannot be seen (kernel threads)
        std::uint64_t exe_inode = 0;
        bool operator==(const process_instance&) const = default;
    };

    struct process_state {
        process_instance instance;
        bool readable = false;
        std::uint64_t stack_top = 0;
        clock::time_point last_read{};
        std::vector<region> auto_regions;     // sorted by base, disjoint (as in maps)
        std::vector<region> explicit_regions; // sorted by base, disjoint
        std::unordered_set<std::uint64_t> reported;
    };

    // Explicit objects may be registered anywhere, but only automatic ones
    // need /proc: this path never reads it.
    std::uint64_t resolve_explicit_only(std::uint32_t pid, std::uint64_t addr)
    {
        if (pid != 0) {
            auto it = processes_.find(pid);
            if (it != processes_.end()) {
                if (const region* r = find_region(it->second.explicit_regions, addr)) {
                    ++stats_.explicit_hits;
                    return r->id;
                }
            }
        }
        if (const region* r = find_region(global_regions_, addr)) {
            ++stats_.explicit_hits;
            return r->id;
        }
        ++stats_.non_user_addresses;
        ++stats_.misses;
        return 0;
    }

    static std::array<char, 4> perms_of(std::string_view text) noexcept
    {
        std::array<char, 4> out{};
        std::copy_n(text.begin(), std::min(text.size(), out.size()), out.begin());
        return out;
    }

    static std::uint64_t nonzero(std::uint64_t id) noexcept { return id == 0 ? 1 : id; }

    static const region* find_region(const std::vector<region>& regions, std::uint64_t addr) noexcept
    {
        auto it = std::upper_bound(regions.begin(), regions.end(), addr,
                                   [](std::uint64_t a, const region& r) { return a < r.base; });
        if (it == regions.begin())
            return nullptr;
        --it;
        return addr < it->end ? &*it : nullptr;
    }

    process_state* find_or_load(std::uint32_t pid)
    {
        if (last_ != nullptr && last_pid_ == pid)
            return last_;
        auto it = processes_.find(pid);
        if (it == processes_.end()) {
            if (!config_.auto_register)
                return nullptr;
            return reload(pid);
        }
        last_pid_ = pid;
        last_ = &it->second;
        return last_;
    }

    std::optional<process_instance> read_instance(std::uint32_t pid, std::string& buf)
    {
        const std::string dir = config_.proc_root + "/" + std::to_string(pid);
        if (detail::read_whole_file(dir + "/stat", buf) != 0)
            return std::nullopt;
        const std::optional<std::uint64_t> start = detail::parse_proc_stat_start_time(buf);
        if (!start)
            return std::nullopt;
        process_instance instance;
        instance.start_time = *start;
        struct stat exe;
        if (::stat((dir + "/exe").c_str(), &exe) == 0) { // follows the link, even to a deleted file
            instance.exe_dev = static_cast<std::uint64_t>(exe.st_dev);
            instance.exe_inode = static_cast<std::uint64_t>(exe.st_ino);
        }
        return instance;
    }

    static detail::stable_hasher& add_instance(detail::stable_hasher& h, const process_instance& i) noexcept
    {
        return h.add(i.start_time).add(i.exe_dev).add(i.exe_inode);
    }

    // Re-reads pid's start time and maps. Returns the pid's state, which has
    // no automatic regions when /proc could not be read.
    process_state* reload(std::uint32_t pid)
    {
        process_state& p = processes_[pid];
        last_pid_ = pid;
        last_ = &p;
        p.last_read = clock::now();

        const std::optional<process_instance> instance = read_instance(pid, read_buf_);
        if (!instance || detail::read_whole_file(config_.proc_root + "/" + std::to_string(pid) + "/maps", read_buf_) != 0) {
            ++stats_.proc_read_failures;
            if (p.readable)
                ++stats_.processes_exited;
            p.readable = false;
            p.auto_regions.clear();
            return &p;
        }
        ++stats_.maps_reads;
        if (p.readable && *instance != p.instance)
            replace(p);
        p.instance = *instance;
        p.readable = true;

        proc_maps maps = parse_proc_maps(read_buf_);
        stats_.malformed_maps_lines += maps.malformed_lines;
        std::uint64_t stack_top = 0;
        for (const auto& e : maps.entries)
            if (e.path == "[stack]")
                stack_top = e.end;
        if (p.stack_top != 0 && stack_top != 0 && stack_top != p.stack_top)
            replace(p);
        p.stack_top = stack_top;

        p.auto_regions.clear();
        for (const auto& e : maps.entries) {
            if (!holds_data_objects(e))
                continue;
            const std::uint64_t id = auto_object_id(pid, p.instance, e);
            p.auto_regions.push_back(region{e.start, e.end, id, perms_of(e.perms)});
            report(id, e.path.empty() ? "[anon]" : e.path, e.start, e.end - e.start, perms_of(e.perms), &p);
        }
        std::sort(p.auto_regions.begin(), p.auto_regions.end(),
                  [](const region& a, const region& b) { return a.base < b.base; });
        return &p;
    }

    // The pid now names another process image: nothing of the old one applies.
    void replace(process_state& p)
    {
        ++stats_.processes_replaced;
        p.explicit_regions.clear();
        p.auto_regions.clear();
        p.reported.clear();
        p.stack_top = 0;
    }

    std::uint64_t auto_object_id(std::uint32_t pid, const process_instance& instance, const proc_map_entry& e) const
    {
        const mapping_kind kind = kind_of(e);
        const std::uint64_t anchor = kind == mapping_kind::stack ? e.end : e.start;
        detail::stable_hasher h;
        h.add("microsentinel.data_object.auto.v1").add(host_).add(boot_id_).add(pid);
        return nonzero(add_instance(h, instance)
                           .add(static_cast<std::uint64_t>(kind))
                           .add(e.path)
                           .add(std::uint64_t{e.dev_major} << 32 | e.dev_minor)
                           .add(e.inode)
                           .add(e.offset)
                           .add(anchor)
                           .finish());
    }

    void report(std::uint64_t id, std::string_view mapping, std::uint64_t base, std::uint64_t size,
                std::array<char, 4> perms, process_state* p)
    {
        std::unordered_set<std::uint64_t>& seen = p != nullptr ? p->reported : global_reported_;
        if (!seen.insert(id).second)
            return;
        ++stats_.objects_reported;
        std::string perm_text(perms.begin(), std::find(perms.begin(), perms.end(), '\0'));
        new_objects_.push_back(data_object_row{id, host_, std::string(mapping), base, size, std::move(perm_text)});
    }

    std::string host_;
    registry_config config_;
    std::string boot_id_;
    std::unordered_map<std::uint32_t, process_state> processes_;
    std::vector<region> global_regions_;
    std::unordered_set<std::uint64_t> global_reported_;
    std::vector<data_object_row> new_objects_;
    registry_stats stats_;
    std::string read_buf_;
    std::uint32_t last_pid_ = 0;
    process_state* last_ = nullptr;
};

} // namespace microsentinel
