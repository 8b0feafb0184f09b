#include <doctest/doctest.h>

#include <microsentinel/layout.hpp>

#include <string>

#include "error_text.hpp"
#include <vector>

using namespace microsentinel;

namespace {

// The v2 member table as BTF describes it, written out by hand.
std::vector<field_desc> v2_table()
{
    return {{"tsc", 0, 8},        {"cpu", 8, 4},       {"pid", 12, 4},      {"tid", 16, 4},
            {"pmu_event", 20, 4}, {"ip", 24, 8},       {"data_addr", 32, 8}, {"flow_id", 40, 8},
            {"gso_segs", 48, 4},  {"ingress_ifindex", 52, 2}, {"numa_node", 54, 2}, {"l4_proto", 56, 1},
            {"direction", 57, 1}, {"lbr_nr", 58, 1},   {"pad0", 59, 1},     {"lbr", 64, 256}};
}

std::vector<field_desc> v1_table()
{
    auto t = v2_table();
    std::erase_if(t, [](const field_desc& f) { return f.name == "direction" || f.name == "pad0" || f.name == "lbr_nr"; });
    t.push_back({"lbr_nr", 57, 1});
    t.push_back({"pad0", 58, 2});
    return t;
}

std::string error_of(auto&& f) { return microsentinel::testing::error_text<layout_error>(f); }

} // namespace

TEST_CASE("struct descriptions negotiate by member names, offsets and sizes")
{
    auto v2 = negotiate_from_fields("test", 320, v2_table(), layout_source::btf);
    CHECK(v2.id == layout_id::v2);
    CHECK(v2.record_size == 320);
    CHECK(v2.source == layout_source::btf);
    CHECK(v2.name() == "v2");

    auto v1 = negotiate_from_fields("test", 320, v1_table(), layout_source::capture_header);
    CHECK(v1.id == layout_id::v1);
    CHECK(v1.source == layout_source::capture_header);
}

TEST_CASE("member order in the description does not matter")
{
    auto t = v2_table();
    std::reverse(t.begin(), t.end());
    CHECK(negotiate_from_fields("test", 320, t, layout_source::btf).id == layout_id::v2);
}

TEST_CASE("a description that matches no layout is an error naming what was found")
{
    SUBCASE("a moved member")
    {
        auto t = v2_table();
        t[7].offset = 44;
        auto msg = error_of([&] { negotiate_from_fields("BTF of x.bpf.o", 320, t, layout_source::btf); });
        CHECK(msg.find("BTF of x.bpf.o") != std::string::npos);
        CHECK(msg.find("'flow_id' at offset 44") != std::string::npos);
        CHECK(msg.find("matches no known layout") != std::string::npos);
    }
    SUBCASE("a missing member")
    {
        auto t = v2_table();
        std::erase_if(t, [](const field_desc& f) { return f.name == "tsc"; });
        auto msg = error_of([&] { negotiate_from_fields("test", 320, t, layout_source::btf); });
        CHECK(msg.find("no member 'tsc'") != std::string::npos);
    }
    SUBCASE("a new member inside the known layout instead of appended")
    {
        auto t = v2_table();
        t.push_back({"cgroup", 60, 4});
        auto msg = error_of([&] { negotiate_from_fields("test", 320, t, layout_source::btf); });
        CHECK(msg.find("'cgroup' at offset 60") != std::string::npos);
    }
    SUBCASE("a struct smaller than the layout")
    {
        auto msg = error_of([&] { negotiate_from_fields("test", 300, v2_table(), layout_source::btf); });
        CHECK(msg.find("is 300 bytes") != std::string::npos);
    }
}

TEST_CASE("a struct that appends members still negotiates, with its own record size")
{
    auto t = v2_table();
    t.push_back({"cgroup_id", 320, 8});
    auto l = negotiate_from_fields("test", 328, t, layout_source::btf);
    CHECK(l.id == layout_id::v2);
    CHECK(l.record_size == 328);
}

TEST_CASE("an explicit layout id negotiates; an unknown one is an error")
{
    CHECK(negotiate_from_layout_id(1, 320).id == layout_id::v1);
    CHECK(negotiate_from_layout_id(2, 320).id == layout_id::v2);
    CHECK(negotiate_from_layout_id(2, 320).fields == v2_table());
    CHECK(error_of([] { negotiate_from_layout_id(3, 320); }).find("unknown ms_sample layout id 3") != std::string::npos);
    CHECK(error_of([] { negotiate_from_layout_id(2, 100); }).find("record size given is 100") != std::string::npos);
}

TEST_CASE("the record size alone is refused where it is ambiguous")
{
    auto msg = error_of([] { negotiate_from_record_size(320); });
    CHECK(msg.find("cannot tell them apart") != std::string::npos);
    CHECK(msg.find("v1") != std::string::npos);
    CHECK(msg.find("v2") != std::string::npos);
    CHECK(error_of([] { negotiate_from_record_size(200); }).find("no known ms_sample layout is 200 bytes") !=
          std::string::npos);
}

TEST_CASE("layout sources have the names the metrics use")
{
    CHECK(to_string(layout_source::btf) == "btf");
    CHECK(to_string(layout_source::capture_header) == "capture_header");
    CHECK(to_string(layout_source::record_size) == "record_size");
}
