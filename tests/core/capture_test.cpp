#include <doctest/doctest.h>

#include <microsentinel/capture.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "record_bytes.hpp"

using namespace microsentinel;
using namespace microsentinel::testing;

namespace {

struct bytes_out {
    std::vector<std::byte> b;
    template <class T>
    void put(T v)
    {
        auto* p = reinterpret_cast<const std::byte*>(&v);
        b.insert(b.end(), p, p + sizeof v);
    }
    void put_str(std::string_view s)
    {
        auto* p = reinterpret_cast<const std::byte*>(s.data());
        b.insert(b.end(), p, p + s.size());
    }
    void put_field(std::string_view name, std::uint32_t offset, std::uint32_t size)
    {
        put<std::uint8_t>(std::uint8_t(name.size()));
        put_str(name);
        put(offset);
        put(size);
    }
};

// A capture header written by hand: host "h1", layout 2 with the v2 field table.
std::vector<std::byte> handwritten_header(std::uint32_t layout_id, bool v1_table = false)
{
    bytes_out o;
    o.put_str("MSENTCAP");
    o.put<std::uint16_t>(1);
    o.put<std::uint16_t>(0);
    o.put<std::uint32_t>(0);
    o.put<std::int64_t>(1'700'000'000'000'000'000);
    o.put<std::uint16_t>(2);
    o.put_str("h1");
    o.put<std::uint32_t>(layout_id);
    o.put<std::uint32_t>(320);
    o.put<std::uint16_t>(16);
    const char* head[] = {"tsc", "cpu", "pid", "tid", "pmu_event", "ip", "data_addr", "flow_id", "gso_segs"};
    const std::uint32_t offs[] = {0, 8, 12, 16, 20, 24, 32, 40, 48};
    const std::uint32_t sizes[] = {8, 4, 4, 4, 4, 8, 8, 8, 4};
    for (int i = 0; i < 9; ++i)
        o.put_field(head[i], offs[i], sizes[i]);
    o.put_field("ingress_ifindex", 52, 2);
    o.put_field("numa_node", 54, 2);
    o.put_field("l4_proto", 56, 1);
    if (v1_table) {
        o.put_field("lbr_nr", 57, 1);
        o.put_field("pad0", 58, 2);
        o.put_field("lbr", 64, 256);
        o.put_field("unused", 320, 0); // keeps the count at 16
    } else {
        o.put_field("direction", 57, 1);
        o.put_field("lbr_nr", 58, 1);
        o.put_field("pad0", 59, 1);
        o.put_field("lbr", 64, 256);
    }
    std::uint32_t len = std::uint32_t(o.b.size());
    std::memcpy(o.b.data() + 12, &len, sizeof len);
    return o.b;
}

void put_frame(bytes_out& o, std::uint32_t type, std::span<const std::byte> payload)
{
    o.put(type);
    o.put(std::uint32_t(payload.size()));
    o.b.insert(o.b.end(), payload.begin(), payload.end());
}

struct memfile {
    explicit memfile(const std::vector<std::byte>& data) : f(std::tmpfile())
    {
        std::fwrite(data.data(), 1, data.size(), f);
        std::rewind(f);
    }
    ~memfile() { std::fclose(f); }
    std::FILE* f;
};

struct collecting_handler {
    std::vector<sample> samples;
    std::vector<layout_id> layouts;
    std::vector<collector_counters> counters;
    void on_sample(const sample& s) { samples.push_back(s); }
    void on_layout(const negotiated_layout& l) { layouts.push_back(l.id); }
    void on_counters(const collector_counters& c) { counters.push_back(c); }
};

std::string capture_error_of(const std::vector<std::byte>& data)
{
    memfile m(data);
    try {
        capture_reader r(m.f, "cap");
        collecting_handler h;
        replay(r, h);
    } catch (const capture_error& e) {
        return e.what();
    }
    return "no error";
}

} // namespace

TEST_CASE("a handwritten capture replays: header, samples, a layout change, counters")
{
    bytes_out o;
    o.b = handwritten_header(2);
    golden_fields f;
    f.direction = 1;
    auto r2 = v2_record(f);
    put_frame(o, 1, r2);
    bytes_out layout;
    layout.put<std::uint32_t>(1);
    layout.put<std::uint32_t>(320);
    layout.put<std::uint16_t>(0);
    put_frame(o, 2, layout.b);
    f.flow_id = 77;
    auto r1 = v1_record(f);
    put_frame(o, 1, r1);
    bytes_out counters;
    counters.put<std::uint64_t>(10);
    counters.put<std::uint64_t>(2);
    counters.put<std::uint64_t>(1);
    put_frame(o, 3, counters.b);

    memfile m(o.b);
    capture_reader reader(m.f, "cap");
    CHECK(reader.header().host == "h1");
    CHECK(reader.header().boot_to_wall_ns == 1'700'000'000'000'000'000);
    CHECK(reader.header().layout.id == layout_id::v2);
    CHECK(reader.header().layout.source == layout_source::capture_header);
    collecting_handler h;
    auto stats = replay(reader, h);
    REQUIRE(h.samples.size() == 2);
    CHECK(h.samples[0].dir == direction::tx);
    CHECK(h.samples[1].dir == direction::rx);
    CHECK(h.samples[1].flow_id == 77);
    CHECK(h.layouts == std::vector<layout_id>{layout_id::v1});
    REQUIRE(h.counters.size() == 1);
    CHECK(h.counters[0] == collector_counters{10, 2, 1});
    CHECK(stats.decoded == 2);
}

TEST_CASE("the writer produces the documented bytes")
{
    std::FILE* f = std::tmpfile();
    capture_writer w(f);
    w.write_header({1'700'000'000'000'000'000, "h1", negotiate_from_layout_id(2, 320)});
    auto r = v2_record();
    w.write_sample(r);
    w.flush();
    std::vector<std::byte> got(std::size_t(std::ftell(f)));
    std::rewind(f);
    REQUIRE(std::fread(got.data(), 1, got.size(), f) == got.size());
    std::fclose(f);

    bytes_out want;
    want.b = handwritten_header(2);
    put_frame(want, 1, r);
    CHECK(got == want.b);
}

TEST_CASE("malformed captures are errors that name the byte offset")
{
    SUBCASE("bad magic")
    {
        auto h = handwritten_header(2);
        h[0] = std::byte{'X'};
        CHECK(capture_error_of(h).find("byte offset 0: not a MicroSentinel capture") != std::string::npos);
    }
    SUBCASE("a layout id that contradicts the field table")
    {
        CHECK(capture_error_of(handwritten_header(1)).find("says layout 1 but its field table describes v2") !=
              std::string::npos);
    }
    SUBCASE("a frame cut short")
    {
        bytes_out o;
        o.b = handwritten_header(2);
        const auto header_len = o.b.size();
        auto r = v2_record();
        put_frame(o, 1, r);
        o.b.resize(o.b.size() - 5);
        auto msg = capture_error_of(o.b);
        CHECK(msg.find("byte offset " + std::to_string(header_len)) != std::string::npos);
        CHECK(msg.find("ends inside a frame") != std::string::npos);
    }
    SUBCASE("an unknown frame type")
    {
        bytes_out o;
        o.b = handwritten_header(2);
        const auto header_len = o.b.size();
        o.put<std::uint32_t>(9);
        o.put<std::uint32_t>(0);
        auto msg = capture_error_of(o.b);
        CHECK(msg.find("byte offset " + std::to_string(header_len) + ": unknown frame type 9") != std::string::npos);
    }
    SUBCASE("a header whose field table matches no layout")
    {
        auto h = handwritten_header(0, true);
        CHECK(capture_error_of(h).find("matches no known layout") == std::string::npos);
        auto bad = handwritten_header(2);
        bad[bad.size() - 8] = std::byte{65}; // lbr offset 64 -> 65
        CHECK(capture_error_of(bad).find("matches no known layout") != std::string::npos);
    }
}

TEST_CASE("bad records inside a good capture are skipped and counted, the rest decode")
{
    bytes_out o;
    o.b = handwritten_header(2);
    auto good = v2_record();
    put_frame(o, 1, good);
    put_frame(o, 1, std::span(good).first(100));
    put_frame(o, 1, good);
    memfile m(o.b);
    capture_reader reader(m.f, "cap");
    collecting_handler h;
    auto stats = replay(reader, h);
    CHECK(h.samples.size() == 2);
    CHECK(stats.skipped_for(skip_reason::truncated) == 1);
}
