#include <doctest/doctest.h>

#include <microsentinel/decode.hpp>

#include <vector>

#include "record_bytes.hpp"

using namespace microsentinel;
using namespace microsentinel::testing;

namespace {

sample_decoder decoder_for(layout_id id) { return sample_decoder(negotiate_from_layout_id(std::uint32_t(id), 320)); }

void check_common_fields(const sample& s, const golden_fields& f)
{
    CHECK(s.tsc == f.tsc);
    CHECK(s.cpu == f.cpu);
    CHECK(s.pid == f.pid);
    CHECK(s.tid == f.tid);
    CHECK(s.pmu_event == f.pmu_event);
    CHECK(s.ip == f.ip);
    CHECK(s.data_addr == f.data_addr);
    CHECK(s.flow_id == f.flow_id);
    CHECK(s.gso_segs == f.gso_segs);
    CHECK(s.ingress_ifindex == f.ingress_ifindex);
    CHECK(s.numa_node == f.numa_node);
    CHECK(s.l4_proto == f.l4_proto);
    CHECK(s.lbr_nr == f.lbr_nr);
    REQUIRE(s.lbr_nr >= 2);
    CHECK(s.lbr_at(0).from == 0x1000);
    CHECK(s.lbr_at(1).to == 0x2001);
}

} // namespace

TEST_CASE("a golden v2 record decodes every field, direction included")
{
    golden_fields f;
    f.direction = 1;
    auto bytes = v2_record(f);
    auto d = decoder_for(layout_id::v2);
    sample s{};
    REQUIRE(d.decode(bytes, s));
    check_common_fields(s, f);
    CHECK(s.dir == direction::tx);
    CHECK(d.stats().decoded == 1);
    CHECK(d.stats().skipped_total() == 0);
}

TEST_CASE("a golden v1 record decodes with direction rx")
{
    golden_fields f;
    auto bytes = v1_record(f);
    auto d = decoder_for(layout_id::v1);
    sample s{};
    s.dir = direction::tx;
    REQUIRE(d.decode(bytes, s));
    check_common_fields(s, f);
    CHECK(s.dir == direction::rx);
}

TEST_CASE("the zero-copy view reads fields in place")
{
    auto bytes = v2_record();
    record_view<layout_v2> v(bytes.data());
    CHECK(v.flow_id() == 0x1122334455667788ull);
    CHECK(v.direction_byte() == 1);
    CHECK(v.lbr_bytes() == bytes.data() + 64);
    record_view<layout_v1> v1(bytes.data());
    CHECK(v1.direction_byte() == 0);
}

TEST_CASE("a v2 record read with a v1-negotiated decoder is detected or visibly wrong")
{
    SUBCASE("with LBR entries, v2's lbr_nr lands in v1's padding and the record is refused")
    {
        auto bytes = v2_record();
        auto d = decoder_for(layout_id::v1);
        sample s{};
        CHECK_FALSE(d.decode(bytes, s));
        CHECK(d.stats().skipped_for(skip_reason::bad_padding) == 1);
    }
    SUBCASE("without LBR entries, the direction byte reads as lbr_nr: tx becomes rx with one LBR entry")
    {
        golden_fields f;
        f.lbr_nr = 0;
        f.direction = 1;
        auto bytes = v2_record(f);
        auto d = decoder_for(layout_id::v1);
        sample s{};
        REQUIRE(d.decode(bytes, s));
        CHECK(s.dir == direction::rx);
        CHECK(s.lbr_nr == 1);
    }
    SUBCASE("a v1 record read as v2 is refused when its lbr_nr is not a direction")
    {
        auto bytes = v1_record();
        auto d = decoder_for(layout_id::v2);
        sample s{};
        CHECK_FALSE(d.decode(bytes, s));
        CHECK(d.stats().skipped_for(skip_reason::bad_direction) == 1);
    }
}

TEST_CASE("malformed records are skipped and counted per reason, never read past their end")
{
    auto d = decoder_for(layout_id::v2);
    sample s{};
    auto good = v2_record();

    std::vector<std::byte> truncated(good.begin(), good.begin() + 319);
    CHECK_FALSE(d.decode(truncated, s));

    std::vector<std::byte> oversized(good.begin(), good.end());
    oversized.push_back(std::byte{0});
    CHECK_FALSE(d.decode(oversized, s));

    golden_fields f;
    f.lbr_nr = 17;
    auto bad_lbr = v2_record(f);
    CHECK_FALSE(d.decode(bad_lbr, s));

    f = {};
    f.direction = 2;
    auto bad_dir = v2_record(f);
    CHECK_FALSE(d.decode(bad_dir, s));

    CHECK(d.decode(good, s));
    CHECK(d.stats().skipped_for(skip_reason::truncated) == 1);
    CHECK(d.stats().skipped_for(skip_reason::oversized) == 1);
    CHECK(d.stats().skipped_for(skip_reason::bad_lbr_nr) == 1);
    CHECK(d.stats().skipped_for(skip_reason::bad_direction) == 1);
    CHECK(d.stats().decoded == 1);
}

TEST_CASE("packed buffers decode record by record and count a trailing partial record")
{
    std::vector<std::byte> buffer;
    for (std::uint64_t i = 0; i < 3; ++i) {
        golden_fields f;
        f.flow_id = 100 + i;
        auto r = v2_record(f);
        buffer.insert(buffer.end(), r.begin(), r.end());
    }
    buffer.resize(buffer.size() + 10);
    auto d = decoder_for(layout_id::v2);
    std::vector<std::uint64_t> flows;
    d.decode_packed(buffer, [&](const sample& s) { flows.push_back(s.flow_id); });
    CHECK(flows == std::vector<std::uint64_t>{100, 101, 102});
    CHECK(d.stats().skipped_for(skip_reason::truncated) == 1);
}

TEST_CASE("a layout with appended members decodes records of its larger size")
{
    auto fields = canonical_fields(layout_id::v2);
    fields.push_back({"cgroup_id", 320, 8});
    auto layout = negotiate_from_fields("test", 328, fields, layout_source::btf);
    CHECK(layout.id == layout_id::v2);
    sample_decoder d(layout);
    auto r = v2_record();
    std::vector<std::byte> longer(r.begin(), r.end());
    longer.resize(328);
    sample s{};
    REQUIRE(d.decode(longer, s));
    CHECK(s.dir == direction::tx);
    CHECK_FALSE(d.decode(r, s));
    CHECK(d.stats().skipped_for(skip_reason::truncated) == 1);
}
