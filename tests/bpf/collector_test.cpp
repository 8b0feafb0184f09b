// The collector on this kernel: load, attach, pin, unload; real loopback
// traffic recorded and decoded; the packet hooks; the map operators dump.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <doctest/doctest.h>
#include <linux/perf_event.h>
#include <net/if.h>
#include <nlohmann/json.hpp>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "collector_fixture.hpp"
#include "microsentinel/ms_sample.h"
#include "traffic.hpp"

using namespace microsentinel;
using namespace microsentinel::testing;
using namespace std::chrono_literals;

namespace {

struct prog_stats {
    std::uint32_t id = 0;
    std::uint64_t run_cnt = 0;
    std::uint64_t run_time_ns = 0;
};

prog_stats pinned_prog_stats(const std::string& path)
{
    int fd = bpf_obj_get(path.c_str());
    REQUIRE_MESSAGE(fd >= 0, "no program pinned at " << path);
    bpf_prog_info info{};
    __u32 len = sizeof info;
    REQUIRE(bpf_obj_get_info_by_fd(fd, &info, &len) == 0);
    close(fd);
    return {info.id, info.run_cnt, info.run_time_ns};
}

std::uint32_t pinned_map_id(const std::string& path)
{
    int fd = bpf_obj_get(path.c_str());
    REQUIRE_MESSAGE(fd >= 0, "no map pinned at " << path);
    bpf_map_info info{};
    __u32 len = sizeof info;
    REQUIRE(bpf_obj_get_info_by_fd(fd, &info, &len) == 0);
    close(fd);
    return info.id;
}

bool contains(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

std::uint64_t monotonic_ns()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::uint64_t(ts.tv_sec) * 1'000'000'000ULL + std::uint64_t(ts.tv_nsec);
}

// Records for `seconds` while `traffic` runs for `traffic_time`, after the
// consumer had a moment to drain what the ring held from before.
capture_contents record_during(test_collector& c, loopback_traffic& traffic, std::chrono::milliseconds traffic_time,
                               int seconds)
{
    const std::string path = c.dir + "/capture.mscap";
    child_process rec({loader_path, "--pin-dir", c.pin_dir, "--record", path, "--duration", std::to_string(seconds)},
                      c.dir);
    std::this_thread::sleep_for(300ms);
    traffic.run_for(traffic_time);
    run_result r = rec.wait(std::chrono::seconds(seconds + 20));
    INFO("loader --record stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    return read_capture(path);
}

} // namespace

TEST_CASE("the loader pins programs, maps and links, reports the event kind, and --unload removes every pin")
{
    require_collector_environment();
    test_collector c;
    run_result r = c.load(object_v2);
    INFO("stdout: " << r.out << "stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(contains(r.out, "layout v2"));
    CHECK((contains(r.out, "events: software (cpu-clock,page-faults)") || contains(r.out, "events: hardware")));
    for (const char* name : {"ms_on_sample", "ms_rx", "ms_tx", "ms_samples", "ms_config", "ms_counters",
                             "ms_cpu_flow", "link_rx", "link_tx", "link_cpu-clock_cpu0"}) {
        if (std::string(name) == "link_cpu-clock_cpu0" && contains(r.out, "events: hardware"))
            continue;
        CHECK_MESSAGE(path_exists(c.pin_dir + "/" + name), name << " is not pinned");
    }
    CHECK(!path_exists(c.pin_dir + "_staging"));

    const std::uint32_t prog_id = pinned_prog_stats(c.pin_dir + "/ms_on_sample").id;
    run_result status = c.loader({"--status"});
    CHECK(status.exit_code == 0);
    CHECK(contains(status.out, "layout v2"));
    CHECK(contains(status.out, "ringbuf_full "));

    run_result u = c.loader({"--unload"});
    CHECK(u.exit_code == 0);
    CHECK(!c.anything_pinned());
    // Unpinned links detach; the program is freed once nothing holds it.
    bool freed = false;
    for (auto end = std::chrono::steady_clock::now() + 5s; !freed && std::chrono::steady_clock::now() < end;) {
        int fd = bpf_prog_get_fd_by_id(prog_id);
        freed = fd < 0;
        if (fd >= 0)
            close(fd);
        std::this_thread::sleep_for(50ms);
    }
    CHECK_MESSAGE(freed, "program id " << prog_id << " still loaded after --unload");
}

TEST_CASE("loopback TCP and UDP traffic yields rx and tx samples whose flow ids match the connections' 5-tuples")
{
    require_collector_environment();
    // On loopback the receive softirq runs inside the sender's dev_queue_xmit, right
    // after the tx hook: with the softirq hooks, rx holds only while receiving and
    // the sender's own work is tx; without them, rx holds until the next packet.
    for (std::string softirq_hooks : {"on", "off"}) {
        CAPTURE(softirq_hooks);
        test_collector c;
        run_result r = c.load(object_v2, {"--sample-rate", "2000", "--budget", "0", "--softirq-hooks", softirq_hooks,
                                        "--events", "cpu-clock,page-faults"});
        INFO("loader: " << r.err);
        REQUIRE(r.exit_code == 0);

        const std::uint64_t start_ns = monotonic_ns(); // before the connections' handshakes
        loopback_traffic traffic;
        capture_contents cap = record_during(c, traffic, 3s, 4);
        const std::uint64_t end_ns = monotonic_ns();

        CHECK(cap.header.layout.id == layout_id::v2);
        CHECK(cap.stats.skipped_total() == 0);
        REQUIRE(!cap.counters.empty());
        CHECK(cap.counters.back().emitted >= cap.samples.size());

        const unsigned lo = if_nametoindex("lo");
        std::size_t rx_total = 0, tx_total = 0;
        for (const auto& f : traffic.flows()) {
            std::size_t rx = 0, tx = 0, wrong_proto = 0, wrong_ifindex = 0, ours = 0;
            for (const auto& rs : cap.samples) {
                if (rs.s.flow_id != f.id())
                    continue;
                (rs.s.dir == direction::rx ? rx : tx)++;
                wrong_proto += rs.s.l4_proto != f.proto;
                // Received on lo; sent packets are generated here, so no ingress interface.
                wrong_ifindex += rs.s.ingress_ifindex != (rs.s.dir == direction::rx ? lo : 0);
                CHECK(rs.s.gso_segs >= 1);
                CHECK(rs.s.lbr_nr == 0);
                ours += rs.s.pid == std::uint32_t(getpid());
                CHECK(rs.s.tsc >= start_ns);
                CHECK(rs.s.tsc <= end_ns);
            }
            MESSAGE("softirq hooks " << softirq_hooks << ", " << f.describe() << ": " << rx << " rx, " << tx
                                     << " tx samples");
            CHECK_MESSAGE(rx + tx > 0, "no sample carries the flow id of " << f.describe());
            CHECK(wrong_proto == 0);
            CHECK(wrong_ifindex == 0);
            CHECK(ours > 0);
            rx_total += rx;
            tx_total += tx;
        }
        CHECK(rx_total > 0);
        CHECK(tx_total > 0);
        if (softirq_hooks == "on")
            CHECK(tx_total > rx_total);
        else
            CHECK(rx_total > tx_total);
    }
}

namespace {

prog_stats fd_prog_stats(int fd)
{
    bpf_prog_info info{};
    __u32 len = sizeof info;
    REQUIRE(bpf_obj_get_info_by_fd(fd, &info, &len) == 0);
    return {info.id, info.run_cnt, info.run_time_ns};
}

struct hook_runs {
    std::uint64_t exchanges = 0;
    std::uint64_t runs[4] = {};   // rx, tx, softirq entry, softirq exit
    std::uint64_t ns_per_run[4] = {};
};

// Loopback echo traffic for 2 s, counting the runs of the programs behind
// `stats_of(0..hooks-1)` with the kernel's BPF run-time statistics on.
template <class StatsOf>
hook_runs drive_hooks(int hooks, StatsOf&& stats_of)
{
    int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
    REQUIRE(stats_fd >= 0);
    prog_stats before[4], after[4];
    for (int i = 0; i < hooks; ++i)
        before[i] = stats_of(i);
    loopback_traffic traffic;
    traffic.run_for(2s, std::chrono::microseconds(0));
    for (int i = 0; i < hooks; ++i)
        after[i] = stats_of(i);
    close(stats_fd);
    hook_runs h;
    for (std::size_t i = 0; i < traffic.size(); ++i)
        h.exchanges += traffic.pair(i).exchanges;
    for (int i = 0; i < hooks; ++i) {
        h.runs[i] = after[i].run_cnt - before[i].run_cnt;
        h.ns_per_run[i] = h.runs[i] ? (after[i].run_time_ns - before[i].run_time_ns) / h.runs[i] : 0;
    }
    return h;
}

} // namespace

TEST_CASE("the packet hooks fire on both paths for loopback traffic: tp_btf (the default) and raw_tp")
{
    require_collector_environment();
    for (std::string hook : {"tp_btf", "raw_tp"}) {
        CAPTURE(hook);
        const std::string suffix = hook == "raw_tp" ? "_raw" : "";
        hook_runs collector, empty;
        {
            test_collector c;
            run_result r = c.load(object_v2, {"--hook", hook});
            INFO("loader: " << r.err);
            REQUIRE(r.exit_code == 0);
            const char* names[] = {"/ms_rx", "/ms_tx", "/ms_rx_begin", "/ms_rx_end"};
            collector = drive_hooks(4, [&](int i) { return pinned_prog_stats(c.pin_dir + names[i] + suffix); });
        }
        {
            bpf_object* obj = bpf_object__open_file(MS_TEST_EMPTY_HOOKS_OBJECT, nullptr);
            REQUIRE(obj != nullptr);
            bpf_program* prog;
            bpf_object__for_each_program(prog, obj)
            {
                bool raw = std::string(bpf_program__name(prog)).ends_with("_raw");
                bpf_program__set_autoload(prog, raw == (hook == "raw_tp"));
            }
            REQUIRE(bpf_object__load(obj) == 0);
            bpf_program* rx = bpf_object__find_program_by_name(obj, ("empty_rx" + suffix).c_str());
            bpf_program* tx = bpf_object__find_program_by_name(obj, ("empty_tx" + suffix).c_str());
            bpf_link* rx_link = bpf_program__attach(rx);
            bpf_link* tx_link = bpf_program__attach(tx);
            CHECK(rx_link != nullptr);
            CHECK(tx_link != nullptr);
            if (rx_link && tx_link)
                empty = drive_hooks(2, [&](int i) { return fd_prog_stats(bpf_program__fd(i ? tx : rx)); });
            bpf_link__destroy(rx_link);
            bpf_link__destroy(tx_link);
            bpf_object__close(obj);
        }
        MESSAGE(hook << " per packet with kernel.bpf_stats: collector rx " << collector.ns_per_run[0]
                     << " ns, tx " << collector.ns_per_run[1] << " ns; empty rx " << empty.ns_per_run[0]
                     << " ns, tx " << empty.ns_per_run[1] << " ns; softirq entry " << collector.ns_per_run[2]
                     << " ns, exit " << collector.ns_per_run[3] << " ns per softirq (" << collector.runs[2]
                     << " softirqs for " << collector.runs[0] << " received packets)");
        // Every exchange is a request and a reply, each seen once on each path.
        for (const hook_runs* h : {&collector, &empty}) {
            CHECK(h->exchanges > 1000);
            CHECK(h->runs[0] >= 2 * h->exchanges);
            CHECK(h->runs[1] >= 2 * h->exchanges);
        }
        // The receive path ran inside NET_RX softirqs, which the softirq hooks saw.
        CHECK(collector.runs[2] > 0);
        CHECK(collector.runs[3] > 0);
    }
}

TEST_CASE("bpftool map dump of ms_cpu_flow shows direction values that differ for tx and rx (upgrade guide step 5)")
{
    require_collector_environment();
    const std::string bpftool = require_program("bpftool", "bpftool");
    test_collector c;
    run_result r = c.load(object_v2);
    INFO("loader: " << r.err);
    REQUIRE(r.exit_code == 0);
    const std::uint32_t id = pinned_map_id(c.pin_dir + "/ms_cpu_flow");

    loopback_traffic traffic;
    std::set<std::uint64_t> ours;
    for (const auto& f : traffic.flows())
        ours.insert(f.id());
    std::thread driver([&] { traffic.run_for(4s); });
    std::set<int> directions;
    std::string last_dump;
    for (auto end = std::chrono::steady_clock::now() + 3s;
         directions.size() < 2 && std::chrono::steady_clock::now() < end;) {
        std::this_thread::sleep_for(200ms);
        run_result dump = run({bpftool, "map", "dump", "id", std::to_string(id)}, c.dir);
        REQUIRE(dump.exit_code == 0);
        last_dump = dump.out;
        auto json = nlohmann::json::parse(dump.out);
        for (const auto& entry : json)
            for (const auto& per_cpu : entry.at("values"))
                for (const auto& ctx : per_cpu.at("value").at("hist"))
                    if (ours.count(ctx.at("flow_id").get<std::uint64_t>()))
                        directions.insert(ctx.at("direction").get<int>());
    }
    driver.join();
    INFO("last dump: " << last_dump.substr(0, 2000));
    CHECK(directions.count(MS_DIR_RX) == 1);
    CHECK(directions.count(MS_DIR_TX) == 1);
}

TEST_CASE("page-fault samples carry the faulting address as data_addr")
{
    require_collector_environment();
    test_collector c;
    run_result r = c.load(object_v2, {"--events", "page-faults", "--fault-period", "1", "--budget", "0"});
    INFO("loader: " << r.err);
    REQUIRE(r.exit_code == 0);

    const std::string path = c.dir + "/faults.mscap";
    child_process rec({loader_path, "--pin-dir", c.pin_dir, "--record", path, "--duration", "3"}, c.dir);
    std::this_thread::sleep_for(500ms);
    constexpr std::size_t pages = 1024;
    const std::size_t page = std::size_t(sysconf(_SC_PAGESIZE));
    std::uintptr_t base = 0;
    pid_t toucher_tid = 0;
    std::thread toucher([&] {
        toucher_tid = pid_t(syscall(SYS_gettid));
        void* p = mmap(nullptr, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        REQUIRE(p != MAP_FAILED);
        madvise(p, pages * page, MADV_NOHUGEPAGE);
        base = reinterpret_cast<std::uintptr_t>(p);
        for (std::size_t i = 0; i < pages; ++i)
            static_cast<volatile char*>(p)[i * page] = 1;
        munmap(p, pages * page);
    });
    toucher.join();
    run_result rr = rec.wait(30s);
    INFO("record: " << rr.err);
    REQUIRE(rr.exit_code == 0);

    capture_contents cap = read_capture(path);
    std::set<std::uintptr_t> faulted_pages;
    for (const auto& rs : cap.samples) {
        if (rs.s.pmu_event != MS_EVT_PAGE_FAULTS || rs.s.tid != std::uint32_t(toucher_tid))
            continue;
        if (rs.s.data_addr >= base && rs.s.data_addr < base + pages * page)
            faulted_pages.insert((rs.s.data_addr - base) / page);
    }
    MESSAGE(faulted_pages.size() << " of " << pages << " touched pages seen as page-fault data addresses");
    CHECK(faulted_pages.size() > pages / 2);
}

TEST_CASE("the sample budget throttles, is counted, and changes at run time")
{
    require_collector_environment();
    test_collector c;
    run_result r = c.load(object_v2, {"--events", "cpu-clock", "--budget", "1", "--burst", "1", "--sample-rate", "1000"});
    INFO("loader: " << r.err);
    REQUIRE(r.exit_code == 0);

    auto counter = [&](const std::string& key) {
        run_result status = c.loader({"--status"});
        REQUIRE(status.exit_code == 0);
        auto at = status.out.find("\n" + key + " ");
        REQUIRE_MESSAGE(at != std::string::npos, status.out);
        return std::stoull(status.out.substr(at + key.size() + 2));
    };
    auto burn_all_cpus = [](std::chrono::milliseconds d) {
        std::vector<std::thread> burners;
        for (int i = 0; i < 2; ++i)
            burners.emplace_back([d] { microsentinel::testing::detail::burn_cpu(d); });
        for (auto& t : burners)
            t.join();
    };

    burn_all_cpus(1500ms);
    const auto throttled = counter("throttled");
    const auto emitted = counter("emitted");
    CHECK(throttled > 1000);
    // 1 sample/s per CPU plus the bucket's initial token, over ~2 s on few CPUs.
    CHECK(emitted < 50);

    run_result set = c.loader({"--set-budget", "0"});
    INFO("set-budget: " << set.err);
    REQUIRE(set.exit_code == 0);
    CHECK(counter("budget_per_sec") == 0);
    burn_all_cpus(1000ms);
    CHECK(counter("emitted") > emitted + 500);
}
