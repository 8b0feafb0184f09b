// Negotiation from the BTF the kernel holds for a loaded collector: what a
// consumer of the pinned collector does. Needs root to load BPF objects.
#include <doctest/doctest.h>

#include <microsentinel/btf_layout.hpp>

#include <memory>
#include <string>

#include "error_text.hpp"
#include "requirements.hpp"

using namespace microsentinel;

namespace {

struct object_deleter {
    void operator()(bpf_object* o) const noexcept { bpf_object__close(o); }
};

// Loads (without attaching) a collector object into the kernel.
std::unique_ptr<bpf_object, object_deleter> load(const std::string& path)
{
    microsentinel::testing::require_root();
    std::unique_ptr<bpf_object, object_deleter> obj(bpf_object__open_file(path.c_str(), nullptr));
    REQUIRE_MESSAGE(obj, "cannot open " << path);
    REQUIRE_MESSAGE(bpf_object__load(obj.get()) == 0, "cannot load " << path);
    return obj;
}

int prog_fd(bpf_object* obj, const char* name)
{
    bpf_program* p = bpf_object__find_program_by_name(obj, name);
    REQUIRE(p != nullptr);
    return bpf_program__fd(p);
}

int map_fd(bpf_object* obj, const char* name)
{
    bpf_map* m = bpf_object__find_map_by_name(obj, name);
    REQUIRE(m != nullptr);
    return bpf_map__fd(m);
}

} // namespace

TEST_CASE("a loaded collector's program and maps negotiate its layout from the kernel's BTF")
{
    const std::string dir = MICROSENTINEL_BPF_OBJECT_DIR;
    struct object {
        const char* file;
        layout_id want;
    };
    for (const object o : {object{"/micro_sentinel_kern.bpf.o", layout_id::v2},
                           object{"/micro_sentinel_kern.v1.bpf.o", layout_id::v1}}) {
        const char* file = o.file;
        const layout_id want = o.want;
        CAPTURE(file);
        auto obj = load(dir + file);
        auto from_prog = negotiate_from_prog_fd(prog_fd(obj.get(), "ms_on_sample"));
        CHECK(from_prog.id == want);
        CHECK(from_prog.source == layout_source::btf);
        CHECK(negotiate_from_map_fd(map_fd(obj.get(), "ms_counters")).id == want);
    }
}

TEST_CASE("a ring buffer map carries no BTF, and saying so names the fix")
{
    auto obj = load(std::string(MICROSENTINEL_BPF_OBJECT_DIR) + "/micro_sentinel_kern.bpf.o");
    auto msg = microsentinel::testing::error_text<layout_error>(
        [&] { negotiate_from_map_fd(map_fd(obj.get(), "ms_samples")); });
    CHECK(msg.find("carries no BTF") != std::string::npos);
}
