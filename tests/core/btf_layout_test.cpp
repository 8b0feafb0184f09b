#include <doctest/doctest.h>

#include <microsentinel/btf_layout.hpp>

#include <string>

#include "error_text.hpp"

using namespace microsentinel;

namespace {

// Builds `struct ms_sample` in fresh BTF with libbpf's writer API, member by
// member at the documented offsets.
struct btf_builder {
    struct btf* btf = btf__new_empty();
    int u8 = btf__add_int(btf, "unsigned char", 1, 0);
    int u16 = btf__add_int(btf, "unsigned short", 2, 0);
    int u32 = btf__add_int(btf, "unsigned int", 4, 0);
    int u64 = btf__add_int(btf, "unsigned long long", 8, 0);
    int lbr_array = 0;
    int pad2_array = 0;

    btf_builder()
    {
        int entry = btf__add_struct(btf, "ms_lbr_entry", 16);
        btf__add_field(btf, "from", u64, 0, 0);
        btf__add_field(btf, "to", u64, 64, 0);
        lbr_array = btf__add_array(btf, u32, entry, 16);
        pad2_array = btf__add_array(btf, u32, u8, 2);
    }
    ~btf_builder() { btf__free(btf); }

    void head(std::uint32_t size = 320)
    {
        REQUIRE(btf__add_struct(btf, "ms_sample", size) > 0);
        field("tsc", u64, 0);
        field("cpu", u32, 8);
        field("pid", u32, 12);
        field("tid", u32, 16);
        field("pmu_event", u32, 20);
        field("ip", u64, 24);
        field("data_addr", u64, 32);
        field("flow_id", u64, 40);
        field("gso_segs", u32, 48);
        field("ingress_ifindex", u16, 52);
        field("numa_node", u16, 54);
        field("l4_proto", u8, 56);
    }
    void field(const char* name, int type, std::uint32_t byte_offset, std::uint32_t bit_size = 0)
    {
        REQUIRE(btf__add_field(btf, name, type, byte_offset * 8, bit_size) == 0);
    }
    void v2_tail()
    {
        field("direction", u8, 57);
        field("lbr_nr", u8, 58);
        field("pad0", u8, 59);
        field("lbr", lbr_array, 64);
    }
    void v1_tail()
    {
        field("lbr_nr", u8, 57);
        field("pad0", pad2_array, 58);
        field("lbr", lbr_array, 64);
    }
};

std::string error_of(auto&& f) { return microsentinel::testing::error_text<layout_error>(f); }

} // namespace

TEST_CASE("BTF of a v2 collector negotiates layout v2")
{
    btf_builder b;
    b.head();
    b.v2_tail();
    auto l = negotiate_from_btf(b.btf, "test BTF");
    CHECK(l.id == layout_id::v2);
    CHECK(l.source == layout_source::btf);
    CHECK(l.record_size == 320);
}

TEST_CASE("BTF of a v1 collector negotiates layout v1")
{
    btf_builder b;
    b.head();
    b.v1_tail();
    CHECK(negotiate_from_btf(b.btf, "test BTF").id == layout_id::v1);
}

TEST_CASE("BTF that appends a member still negotiates v2 with the larger record")
{
    btf_builder b;
    b.head(328);
    b.v2_tail();
    b.field("cgroup_id", b.u64, 320);
    auto l = negotiate_from_btf(b.btf, "test BTF");
    CHECK(l.id == layout_id::v2);
    CHECK(l.record_size == 328);
}

TEST_CASE("BTF without struct ms_sample, or with a bit-field, is a clear error")
{
    btf_builder empty;
    CHECK(error_of([&] { negotiate_from_btf(empty.btf, "test BTF"); }).find("has no struct ms_sample") !=
          std::string::npos);

    btf_builder bits;
    bits.head();
    bits.field("direction", bits.u8, 57, 1);
    CHECK(error_of([&] { negotiate_from_btf(bits.btf, "test BTF"); }).find("bit-field") != std::string::npos);
}

TEST_CASE("a file that is not a BPF object is a clear error naming the path")
{
    auto msg = error_of([] { negotiate_from_object_file("/nonexistent/collector.bpf.o"); });
    CHECK(msg.find("/nonexistent/collector.bpf.o") != std::string::npos);
}

#ifdef MICROSENTINEL_BPF_OBJECT_DIR
TEST_CASE("the project's own collector objects negotiate v2 and, built legacy, v1")
{
    const std::string dir = MICROSENTINEL_BPF_OBJECT_DIR;
    CHECK(negotiate_from_object_file(dir + "/micro_sentinel_kern.bpf.o").id == layout_id::v2);
    CHECK(negotiate_from_object_file(dir + "/micro_sentinel_kern.v1.bpf.o").id == layout_id::v1);
}
#endif
