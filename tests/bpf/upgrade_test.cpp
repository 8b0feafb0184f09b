// Upgrade and rollback: the previous release's object (layout v1), replacing
// the pinned collector under a recording consumer, and the loader's failures.
#include <bpf/bpf.h>
#include <doctest/doctest.h>
#include <net/if.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "collector_fixture.hpp"
#include "microsentinel/ms_sample.h"
#include "traffic.hpp"

using namespace microsentinel;
using namespace microsentinel::testing;
using namespace std::chrono_literals;

namespace {

const std::string unknown_layout_object = MS_TEST_UNKNOWN_LAYOUT_OBJECT;

bool contains(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

std::size_t line_count(const std::string& text) { return std::size_t(std::count(text.begin(), text.end(), '\n')); }

std::uint32_t pinned_prog_id(const std::string& path)
{
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0)
        return 0;
    bpf_prog_info info{};
    __u32 len = sizeof info;
    bpf_obj_get_info_by_fd(fd, &info, &len);
    close(fd);
    return info.id;
}

bool is_flow_of(const sample& s, const std::vector<flow_tuple>& flows)
{
    return std::any_of(flows.begin(), flows.end(), [&](const flow_tuple& f) { return f.id() == s.flow_id; });
}

} // namespace

TEST_CASE("the v1 object records decode with direction rx and correct other fields")
{
    require_collector_environment();
    test_collector c;
    run_result r = c.load(object_v1, {"--sample-rate", "2000", "--events", "cpu-clock,page-faults"});
    INFO("loader: " << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(contains(r.out, "layout v1"));

    loopback_traffic traffic;
    const std::string path = c.dir + "/v1.mscap";
    child_process rec({loader_path, "--pin-dir", c.pin_dir, "--record", path, "--duration", "4"}, c.dir);
    std::this_thread::sleep_for(300ms);
    traffic.run_for(3s);
    run_result rr = rec.wait(30s);
    INFO("record: " << rr.err);
    REQUIRE(rr.exit_code == 0);

    capture_contents cap = read_capture(path);
    CHECK(cap.header.layout.id == layout_id::v1);
    CHECK(cap.layout_frames.empty());
    CHECK(cap.stats.skipped_total() == 0);
    const unsigned lo = if_nametoindex("lo");
    const long cpus = sysconf(_SC_NPROCESSORS_CONF);
    std::size_t ours = 0;
    for (const auto& f : traffic.flows()) {
        std::size_t n = 0;
        for (const auto& rs : cap.samples) {
            const sample& s = rs.s;
            if (s.flow_id != f.id())
                continue;
            ++n;
            CHECK(s.dir == direction::rx);
            CHECK(s.l4_proto == f.proto);
            CHECK(s.cpu < std::uint32_t(cpus));
            CHECK((s.pmu_event == MS_EVT_CPU_CLOCK || s.pmu_event == MS_EVT_PAGE_FAULTS));
            CHECK(s.gso_segs >= 1);
            CHECK((s.ingress_ifindex == lo || s.ingress_ifindex == 0));
            CHECK(s.lbr_nr == 0);
            if (s.pmu_event == MS_EVT_CPU_CLOCK)
                CHECK(s.data_addr == 0);
        }
        MESSAGE(f.describe() << ": " << n << " samples");
        ours += n;
    }
    CHECK(ours > 0);
    std::size_t from_this_process = 0;
    for (const auto& rs : cap.samples)
        from_this_process += rs.s.pid == std::uint32_t(getpid()) && is_flow_of(rs.s, traffic.flows());
    CHECK(from_this_process > 0);
}

TEST_CASE("replacing the pinned collector v2 -> v1 -> v2 under a recording consumer misdecodes no record")
{
    require_collector_environment();
    test_collector c;
    run_result r = c.load(object_v2, {"--sample-rate", "2000", "--events", "cpu-clock,page-faults"});
    INFO("loader: " << r.err);
    REQUIRE(r.exit_code == 0);
    const std::uint32_t first_id = pinned_prog_id(c.pin_dir + "/ms_on_sample");

    loopback_traffic traffic;
    const std::string path = c.dir + "/swap.mscap";
    child_process rec({loader_path, "--pin-dir", c.pin_dir, "--record", path, "--duration", "9"}, c.dir);
    std::this_thread::sleep_for(300ms);
    std::thread driver([&] { traffic.run_for(8s); });

    std::this_thread::sleep_for(2500ms);
    run_result to_v1 = c.load(object_v1, {"--sample-rate", "2000", "--events", "cpu-clock,page-faults"});
    std::this_thread::sleep_for(2500ms);
    run_result to_v2 = c.load(object_v2, {"--sample-rate", "2000", "--events", "cpu-clock,page-faults"});
    driver.join();
    run_result rr = rec.wait(30s);

    INFO("to v1: " << to_v1.out << to_v1.err);
    INFO("to v2: " << to_v2.out << to_v2.err);
    INFO("record: " << rr.err);
    CHECK(to_v1.exit_code == 0);
    CHECK(contains(to_v1.out, "replaced the pinned collector"));
    CHECK(to_v2.exit_code == 0);
    CHECK(pinned_prog_id(c.pin_dir + "/ms_on_sample") != first_id);
    CHECK(!path_exists(c.pin_dir + "_old"));
    CHECK(!path_exists(c.pin_dir + "_staging"));
    REQUIRE(rr.exit_code == 0);

    capture_contents cap = read_capture(path);
    CHECK(cap.header.layout.id == layout_id::v2);
    // The layouts in force, in order: v2 (header), then v1, then v2 again.
    std::vector<layout_id> sequence{cap.header.layout.id};
    for (const auto& l : cap.layout_frames)
        if (l.id != sequence.back())
            sequence.push_back(l.id);
    REQUIRE(sequence.size() >= 3);
    CHECK(sequence[1] == layout_id::v1);
    CHECK(sequence[2] == layout_id::v2);

    // A v2 tx record read as v1 shows its direction byte as lbr_nr = 1 (and
    // fails the v1 padding check); no software sample has branch records.
    std::size_t v1_ours = 0, v2_tx_ours = 0, with_lbr = 0, bad_event = 0;
    for (const auto& rs : cap.samples) {
        with_lbr += rs.s.lbr_nr != 0;
        bad_event += rs.s.pmu_event != MS_EVT_CPU_CLOCK && rs.s.pmu_event != MS_EVT_PAGE_FAULTS;
        if (!is_flow_of(rs.s, traffic.flows()))
            continue;
        v1_ours += rs.layout == layout_id::v1;
        v2_tx_ours += rs.layout == layout_id::v2 && rs.s.dir == direction::tx;
    }
    MESSAGE(cap.samples.size() << " samples, " << cap.layout_frames.size() << " layout frames; " << v1_ours
                               << " of our flows under v1, " << v2_tx_ours << " tx under v2");
    CHECK(cap.stats.skipped_total() == 0);
    CHECK(with_lbr == 0);
    CHECK(bad_event == 0);
    CHECK(v1_ours > 0);
    CHECK(v2_tx_ours > 0);
}

TEST_CASE("an object with an unknown sample layout is refused with one line, a non-zero exit and nothing pinned")
{
    require_collector_environment();
    REQUIRE_MESSAGE(access(unknown_layout_object.c_str(), R_OK) == 0, unknown_layout_object);
    test_collector c;
    run_result r = c.load(unknown_layout_object);
    CHECK(r.exit_code != 0);
    CHECK(line_count(r.err) == 1);
    CHECK(contains(r.err, "unknown sample layout"));
    CHECK(contains(r.err, "fix: "));
    CHECK(r.out.empty());
    CHECK(!c.anything_pinned());

    SUBCASE("and a collector already pinned keeps running")
    {
        REQUIRE(c.load(object_v2).exit_code == 0);
        const std::uint32_t id = pinned_prog_id(c.pin_dir + "/ms_on_sample");
        run_result again = c.load(unknown_layout_object);
        CHECK(again.exit_code != 0);
        CHECK(pinned_prog_id(c.pin_dir + "/ms_on_sample") == id);
        CHECK(!path_exists(c.pin_dir + "_staging"));
    }
}

TEST_CASE("missing CAP_BPF/CAP_PERFMON is one line naming the capabilities, and nothing is pinned")
{
    require_collector_environment();
    const std::string setpriv = require_program("setpriv", "util-linux");
    test_collector c;
    run_result r = run({setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", loader_path, "--pin-dir",
                        c.pin_dir, "--object", object_v2},
                       c.dir);
    CHECK(r.exit_code != 0);
    CHECK(line_count(r.err) == 1);
    CHECK(contains(r.err, "CAP_BPF"));
    CHECK(contains(r.err, "fix: "));
    CHECK(!c.anything_pinned());
}

TEST_CASE("a pin directory where bpffs cannot be mounted is one line with the fix, and nothing is pinned")
{
    require_collector_environment();
    const std::string setpriv = require_program("setpriv", "util-linux");
    test_collector c;
    const std::string parent = c.dir + "/bpffs";
    REQUIRE(mkdir(parent.c_str(), 0700) == 0);
    // Root without CAP_SYS_ADMIN: it may load BPF (CAP_BPF, CAP_PERFMON) but not mount.
    run_result r = run({setpriv, "--bounding-set", "-sys_admin", loader_path, "--pin-dir", parent + "/pins",
                        "--object", object_v2},
                       c.dir);
    CHECK(r.exit_code != 0);
    CHECK(line_count(r.err) == 1);
    CHECK(contains(r.err, "cannot mount bpffs at " + parent));
    CHECK(contains(r.err, "fix: "));
    CHECK(!path_exists(parent + "/pins"));
    CHECK(!path_exists(parent + "/pins_staging"));
}

TEST_CASE("a kernel without BTF is one line with the fix, and nothing is pinned")
{
    require_collector_environment();
    const std::string unshare = require_program("unshare", "util-linux");
    test_collector c;
    // A private mount namespace where /sys/kernel/btf is an empty tmpfs: the host keeps its BTF.
    run_result r = run({unshare, "--mount", "sh", "-c",
                        "mount -t tmpfs none /sys/kernel/btf && exec \"$0\" \"$@\"", loader_path, "--pin-dir",
                        c.pin_dir, "--object", object_v2},
                       c.dir);
    CHECK(r.exit_code != 0);
    CHECK(line_count(r.err) == 1);
    CHECK(contains(r.err, "the kernel exposes no BTF"));
    CHECK(contains(r.err, "fix: boot a kernel built with CONFIG_DEBUG_INFO_BTF=y"));
    CHECK(!c.anything_pinned());
    CHECK(access("/sys/kernel/btf/vmlinux", R_OK) == 0);
}

TEST_CASE("a missing object file is one line naming the path, and nothing is pinned")
{
    require_collector_environment();
    test_collector c;
    run_result r = c.load(c.dir + "/no-such-collector.bpf.o");
    CHECK(r.exit_code != 0);
    CHECK(line_count(r.err) == 1);
    CHECK(contains(r.err, "no-such-collector.bpf.o"));
    CHECK(contains(r.err, "fix: "));
    CHECK(!c.anything_pinned());
}

TEST_CASE("--record without a pinned collector is one line with the fix")
{
    require_collector_environment();
    test_collector c;
    run_result r = c.loader({"--record", c.dir + "/x.mscap", "--duration", "1"});
    CHECK(r.exit_code != 0);
    CHECK(line_count(r.err) == 1);
    CHECK(contains(r.err, "no collector is pinned at " + c.pin_dir));
}

namespace {

// Key=value lines of a systemd unit, in order (comments and sections dropped).
std::vector<std::pair<std::string, std::string>> unit_settings(const std::string& path)
{
    std::vector<std::pair<std::string, std::string>> out;
    std::istringstream in(read_text(path));
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#' || line[0] == '[')
            continue;
        auto eq = line.find('=');
        if (eq != std::string::npos)
            out.emplace_back(line.substr(0, eq), line.substr(eq + 1));
    }
    return out;
}

std::string setting(const std::vector<std::pair<std::string, std::string>>& s, const std::string& key)
{
    for (const auto& [k, v] : s)
        if (k == key)
            return v;
    return {};
}

// A unit's command line with the installed loader and pin directory replaced
// by this build's and the test's.
std::vector<std::string> test_command(const std::string& line, const test_collector& c)
{
    std::vector<std::string> argv;
    std::istringstream in(line);
    for (std::string word; in >> word;) {
        if (word == "/usr/local/bin/micro_sentinel_loader")
            word = loader_path;
        else if (word == "/sys/fs/bpf/micro_sentinel")
            word = c.pin_dir;
        argv.push_back(word);
    }
    return argv;
}

} // namespace

TEST_CASE("micro-sentinel-bpf.service is a oneshot that stays active, and its start and stop commands load and "
          "unload the collector")
{
    require_collector_environment();
    const std::string dir = MS_TEST_SYSTEMD_DIR;
    auto bpf_unit = unit_settings(dir + "/micro-sentinel-bpf.service");
    CHECK(setting(bpf_unit, "Type") == "oneshot");
    CHECK(setting(bpf_unit, "RemainAfterExit") == "yes");
    auto agent_unit = unit_settings(dir + "/micro-sentinel-agent.service");
    CHECK(contains(setting(agent_unit, "ExecStart"), "/usr/local/bin/micro_sentinel_agent --pin-dir "
                                                     "/sys/fs/bpf/micro_sentinel"));
    CHECK(contains(setting(agent_unit, "After"), "micro-sentinel-bpf.service"));

    test_collector c;
    std::vector<std::string> start = test_command(setting(bpf_unit, "ExecStart"), c);
    start.insert(start.end(), {"--object", object_v2});
    run_result started = run(start, c.dir);
    INFO("ExecStart: " << started.err);
    CHECK(started.exit_code == 0);
    CHECK(path_exists(c.pin_dir + "/ms_on_sample"));

    run_result stopped = run(test_command(setting(bpf_unit, "ExecStop"), c), c.dir);
    INFO("ExecStop: " << stopped.err);
    CHECK(stopped.exit_code == 0);
    CHECK(!c.anything_pinned());
}

TEST_CASE("asking for a hardware event without a PMU is one line with the fix, and nothing is pinned")
{
    require_collector_environment();
    test_collector c;
    run_result probe = c.load(object_v2, {"--events", "auto"});
    REQUIRE(probe.exit_code == 0);
    if (contains(probe.out, "events: hardware"))
        skip_or_fail("this machine has a hardware PMU; the no-PMU error cannot happen here");
    REQUIRE(c.loader({"--unload"}).exit_code == 0);

    run_result r = c.load(object_v2, {"--events", "cpu-clock,cycles"});
    CHECK(r.exit_code != 0);
    CHECK(line_count(r.err) == 1);
    CHECK(contains(r.err, "'cycles' needs a hardware PMU"));
    CHECK(contains(r.err, "fix: use software events"));
    CHECK(!c.anything_pinned());
}

TEST_CASE("--lbr with software events only is one line with the fix, and nothing is pinned")
{
    require_collector_environment();
    test_collector c;
    run_result r = c.load(object_v2, {"--events", "cpu-clock,page-faults", "--lbr"});
    CHECK(r.exit_code != 0);
    CHECK(line_count(r.err) == 1);
    CHECK(contains(r.err, "--lbr needs hardware events"));
    CHECK(contains(r.err, "fix: "));
    CHECK(!c.anything_pinned());
}

TEST_CASE("every option --help lists is one the loader accepts")
{
    require_collector_environment();
    test_collector c;
    run_result help = run({loader_path, "--help"}, c.dir);
    REQUIRE(help.exit_code == 0);
    // A value each option accepts; actions other than --status are left out (they act).
    const std::map<std::string, std::string> values = {
        {"--object", object_v2}, {"--pin-dir", c.pin_dir}, {"--events", "cpu-clock"}, {"--sample-rate", "100"},
        {"--fault-period", "8"}, {"--budget", "10"}, {"--burst", "2"}, {"--flow-ttl-us", "500"},
        {"--skid-ns", "0"}, {"--hook", "raw_tp"}, {"--softirq-hooks", "off"}, {"--duration", "1"},
        {"--verbose", ""}, {"--lbr", ""}, {"--help", ""}, {"--status", ""}, {"--unload", ""}, {"--record", ""},
        {"--set-budget", ""}};
    std::set<std::string> listed;
    std::istringstream in(help.out);
    for (std::string word; in >> word;)
        if (word.rfind("--", 0) == 0 && word.size() > 2 && std::isalpha(static_cast<unsigned char>(word[2])))
            listed.insert(word.substr(0, word.find_first_of(",.)':")));
    CHECK(listed.size() >= 15);
    for (const auto& flag : listed) {
        CAPTURE(flag);
        REQUIRE_MESSAGE(values.count(flag) == 1, "--help lists " << flag << ", which this test does not know");
        if (flag == "--help" || flag == "--unload" || flag == "--record" || flag == "--set-budget" ||
            flag == "--status" || flag == "--pin-dir")
            continue;
        std::vector<std::string> argv{loader_path, "--status", "--pin-dir", c.pin_dir, flag};
        if (!values.at(flag).empty())
            argv.push_back(values.at(flag));
        run_result r = run(argv, c.dir);
        // Accepted: the status action runs and finds nothing pinned (exit 1), not a usage error (exit 2).
        CHECK(r.exit_code == 1);
        CHECK(contains(r.err, "no collector is pinned"));
    }
}

TEST_CASE("the loader mounts bpffs at the pin directory's parent when that is an empty directory")
{
    require_collector_environment();
    test_collector c;
    const std::string parent = c.dir + "/bpffs";
    const std::string pins = parent + "/micro_sentinel";
    REQUIRE(mkdir(parent.c_str(), 0700) == 0);
    run_result r = run({loader_path, "--pin-dir", pins, "--object", object_v2}, c.dir);
    INFO("loader: " << r.out << r.err);
    struct statfs st {};
    const bool mounted = statfs(parent.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
    CHECK(r.exit_code == 0);
    CHECK(mounted);
    CHECK(path_exists(pins + "/ms_on_sample"));
    run_result u = run({loader_path, "--unload", "--pin-dir", pins}, c.dir);
    CHECK(u.exit_code == 0);
    CHECK(!path_exists(pins));
    if (mounted)
        CHECK(umount2(parent.c_str(), MNT_DETACH) == 0);
}
