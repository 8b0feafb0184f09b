#pragma once
// What the collector tests share: requirements, a pin directory of their own
// that is unloaded whatever happens, running the loader, reading captures.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "microsentinel/capture.hpp"
#include "process.hpp"
#include "requirements.hpp"

namespace microsentinel::testing {

inline const std::string loader_path = MS_TEST_LOADER;
inline const std::string object_v2 = MS_TEST_OBJECT_V2;
inline const std::string object_v1 = MS_TEST_OBJECT_V1;

inline void require_collector_environment()
{
    require_root();
    if (access("/sys/kernel/btf/vmlinux", R_OK) != 0)
        skip_or_fail("the kernel exposes no BTF (/sys/kernel/btf/vmlinux); the collector needs CONFIG_DEBUG_INFO_BTF");
    for (const auto& f : {loader_path, object_v2, object_v1})
        if (access(f.c_str(), R_OK) != 0)
            skip_or_fail(f + " is missing; build the micro_sentinel_loader and microsentinel_bpf_objects targets");
}

inline bool path_exists(const std::string& p)
{
    struct stat st {};
    return lstat(p.c_str(), &st) == 0;
}

// A pin directory no other test or agent uses, unloaded on destruction.
class test_collector {
public:
    test_collector() : dir(make_temp_dir())
    {
        static int counter = 0;
        pin_dir = "/sys/fs/bpf/ms_test_" + std::to_string(getpid()) + "_" + std::to_string(++counter);
    }
    ~test_collector()
    {
        run({loader_path, "--unload", "--pin-dir", pin_dir}, dir);
        run({"rm", "-rf", dir}, "/tmp");
    }
    test_collector(const test_collector&) = delete;
    test_collector& operator=(const test_collector&) = delete;

    run_result loader(std::vector<std::string> args, std::chrono::milliseconds limit = std::chrono::seconds(60))
    {
        std::vector<std::string> argv{loader_path, "--pin-dir", pin_dir};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv, dir, limit);
    }

    // Loads `object` (extra loader arguments after it); the test fails if it does not load.
    run_result load(const std::string& object, std::vector<std::string> extra = {})
    {
        std::vector<std::string> args{"--object", object};
        args.insert(args.end(), extra.begin(), extra.end());
        return loader(args);
    }

    bool anything_pinned() const
    {
        return path_exists(pin_dir) || path_exists(pin_dir + "_staging") || path_exists(pin_dir + "_old");
    }

    std::string dir; // temp dir for captures and child output
    std::string pin_dir;
};

// A sample as decoded, with the layout it was decoded under.
struct recorded_sample {
    sample s;
    layout_id layout;
};

struct capture_contents {
    capture_header header;
    std::vector<recorded_sample> samples;
    std::vector<negotiated_layout> layout_frames;
    std::vector<collector_counters> counters;
    decode_stats stats;
};

class collecting_handler {
public:
    explicit collecting_handler(capture_contents& c, const sample_decoder& d) : c_(c), d_(d) {}
    void on_sample(const sample& s)
    {
        recorded_sample r{s, d_.layout().id};
        r.s.lbr = nullptr; // points into the reader's buffer, which moves on
        c_.samples.push_back(r);
    }
    void on_layout(const negotiated_layout& l) { c_.layout_frames.push_back(l); }
    void on_counters(const collector_counters& k) { c_.counters.push_back(k); }

private:
    capture_contents& c_;
    const sample_decoder& d_;
};

inline capture_contents read_capture(const std::string& path)
{
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f)
        throw std::runtime_error("cannot open capture " + path);
    capture_contents c;
    try {
        capture_reader reader(f, path);
        c.header = reader.header();
        sample_decoder decoder(reader.header().layout);
        collecting_handler h(c, decoder);
        replay(reader, decoder, h);
        c.stats = decoder.stats();
    } catch (...) {
        std::fclose(f);
        throw;
    }
    std::fclose(f);
    return c;
}

} // namespace microsentinel::testing
