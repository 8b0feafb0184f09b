// The writer's encoding, schema mapping and spool, without a server:
// expected bytes are written out field by field here.
#include <doctest/doctest.h>

#include <microsentinel/clickhouse/schema.hpp>
#include <microsentinel/clickhouse/spool.hpp>
#include <microsentinel/clickhouse/tables.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "temp_dir.hpp"
#include "writer_fixtures.hpp"

namespace ch = microsentinel::clickhouse;
using bytes = microsentinel::testing::le_bytes;
using microsentinel::direction;
using microsentinel::sample;
using microsentinel::testing::temp_dir;

namespace {

sample example_sample()
{
    sample s{};
    s.tsc = 5'000'000'123;
    s.cpu = 3;
    s.pid = 100;
    s.tid = 101;
    s.pmu_event = 2;
    s.ip = 0x401000;
    s.data_addr = 0x7f0000001000;
    s.flow_id = 42;
    s.gso_segs = 4;
    s.ingress_ifindex = 2;
    s.numa_node = 1;
    s.l4_proto = 6;
    s.dir = direction::tx;
    s.lbr_nr = 0;
    return s;
}

// system.columns of the 18.16 test schema's ms_raw_samples (no direction).
ch::server_table raw_samples_18_16()
{
    return ch::parse_system_columns("ts\tDateTime\t\nhost\tString\t\ncpu\tUInt32\t\npid\tUInt32\t\ntid\tUInt32\t\n"
                                    "pmu_event\tUInt32\t\nip\tUInt64\t\ndata_addr\tUInt64\t\nflow_id\tUInt64\t\n"
                                    "gso_segs\tUInt32\t\ningress_ifindex\tUInt16\t\nnuma_node\tUInt16\t\nl4_proto\tUInt8\t\n"
                                    "lbr_nr\tUInt8\t\ndata_object_id\tUInt64\t\n");
}

} // namespace

TEST_CASE("column types parse as system.columns prints them")
{
    CHECK(ch::parse_column_type("UInt64") == ch::column_type{ch::type_kind::uint64});
    CHECK(ch::parse_column_type("DateTime") == ch::column_type{ch::type_kind::datetime});
    CHECK(ch::parse_column_type("DateTime('UTC')") == ch::column_type{ch::type_kind::datetime});
    CHECK(ch::parse_column_type("DateTime64(9)") == ch::column_type{ch::type_kind::datetime64, false, 9});
    CHECK(ch::parse_column_type("DateTime64(3, 'UTC')") == ch::column_type{ch::type_kind::datetime64, false, 3});
    CHECK(ch::parse_column_type("LowCardinality(String)") == ch::column_type{ch::type_kind::string});
    CHECK(ch::parse_column_type("Nullable(UInt8)") == ch::column_type{ch::type_kind::uint8, true});
    CHECK(ch::parse_column_type("Enum8('rx' = 0, 'tx' = 1)") == ch::column_type{ch::type_kind::int8});
    CHECK_FALSE(ch::parse_column_type("Map(String, UInt64)").has_value());
    CHECK_FALSE(ch::parse_column_type("DateTime64(12)").has_value());
}

TEST_CASE("a raw sample is encoded by the server's types: DateTime seconds on 18.16, DateTime64(9) ns on current servers")
{
    ch::raw_sample_context ctx{"h1", 1'700'000'000'000'000'000};
    sample s = example_sample();
    const std::uint64_t wall_ns = 1'700'000'005'000'000'123ull;

    SUBCASE("18.16 schema: DateTime, no direction column")
    {
        auto plan = ch::map_columns(ch::raw_samples_table, raw_samples_18_16());
        REQUIRE(plan.dropped.size() == 1);
        CHECK(plan.dropped[0] == "direction");
        ch::rowbinary_buffer out;
        ch::encode_raw_sample(out, plan, s, 77, ctx);
        bytes expected;
        expected.le(std::uint32_t(wall_ns / 1'000'000'000)).str("h1").le(std::uint32_t(3)).le(std::uint32_t(100))
            .le(std::uint32_t(101)).le(std::uint32_t(2)).le(std::uint64_t(0x401000)).le(std::uint64_t(0x7f0000001000))
            .le(std::uint64_t(42)).le(std::uint32_t(4)).le(std::uint16_t(2)).le(std::uint16_t(1)).le(std::uint8_t(6))
            .le(std::uint8_t(0)).le(std::uint64_t(77));
        CHECK(out.view() == expected.s);
        CHECK(plan.column_list() ==
              "(`ts`,`host`,`cpu`,`pid`,`tid`,`pmu_event`,`ip`,`data_addr`,`flow_id`,`gso_segs`,`ingress_ifindex`,"
              "`numa_node`,`l4_proto`,`lbr_nr`,`data_object_id`)");
    }
    SUBCASE("migrated schema: DateTime64(9), LowCardinality host, direction")
    {
        ch::server_table t = raw_samples_18_16();
        t[0].type = "DateTime64(9)";
        t[1].type = "LowCardinality(String)";
        t.push_back({"direction", "UInt8", "DEFAULT"});
        auto plan = ch::map_columns(ch::raw_samples_table, t);
        CHECK(plan.dropped.empty());
        ch::rowbinary_buffer out;
        ch::encode_raw_sample(out, plan, s, 77, ctx);
        std::string_view v = out.view();
        bytes head;
        head.le(std::int64_t(wall_ns)).str("h1");
        CHECK(v.substr(0, head.s.size()) == head.s);
        CHECK(v.back() == char(1)); // direction tx, last column
    }
}

TEST_CASE("columns the writer does not know are left to the server's default; MATERIALIZED ones are never written")
{
    ch::server_table t = raw_samples_18_16();
    t.push_back({"ingest_note", "String", "DEFAULT"});
    t[5] = {"pmu_event", "UInt32", "MATERIALIZED"};
    auto plan = ch::map_columns(ch::raw_samples_table, t);
    CHECK(std::find(plan.server_defaulted.begin(), plan.server_defaulted.end(), "ingest_note") != plan.server_defaulted.end());
    CHECK(std::find(plan.dropped.begin(), plan.dropped.end(), "pmu_event") != plan.dropped.end());
    for (const auto& c : plan.columns)
        CHECK(c.name != "pmu_event");
}

TEST_CASE("a column of a type the writer cannot encode is dropped and named")
{
    ch::server_table t = raw_samples_18_16();
    t[6].type = "Map(String, UInt64)";
    auto plan = ch::map_columns(ch::raw_samples_table, t);
    REQUIRE(plan.unsupported.size() == 1);
    CHECK(plan.unsupported[0] == "ip Map(String, UInt64)");
}

TEST_CASE("rollup rows and data objects encode field by field")
{
    ch::server_table rollup = ch::parse_system_columns(
        "window_start\tDateTime\t\nhost\tString\t\nflow_id\tUInt64\t\npmu_event\tUInt32\t\nnuma_node\tUInt16\t\n"
        "function\tUInt64\t\ndata_object_id\tUInt64\t\nsamples\tUInt64\t\nnorm_cost\tFloat64\t\ndirection\tUInt8\tDEFAULT\n");
    auto plan = ch::map_columns(ch::flow_rollup_table, rollup);
    microsentinel::flow_rollup_row r{3'000'000'000, 9, direction::tx, 1, 0, 0x1234, 5, 10, 2.5};
    ch::rowbinary_buffer out;
    ch::encode_flow_rollup(out, plan, r, "h");
    double cost = 2.5;
    std::uint64_t cost_bits;
    std::memcpy(&cost_bits, &cost, 8);
    bytes expected;
    // In the writer's field order, whatever the server's column order.
    expected.le(std::uint32_t(3)).str("h").le(std::uint64_t(9)).le(std::uint8_t(1)).le(std::uint32_t(1))
        .le(std::uint16_t(0)).le(std::uint64_t(0x1234)).le(std::uint64_t(5)).le(std::uint64_t(10)).le(cost_bits);
    CHECK(out.view() == expected.s);

    ch::server_table objects = ch::parse_system_columns("object_id\tUInt64\t\nhost\tString\t\nmapping\tString\t\n"
                                                        "base\tUInt64\t\nsize\tUInt64\t\npermissions\tString\t\n");
    auto oplan = ch::map_columns(ch::data_objects_table, objects);
    ch::rowbinary_buffer o;
    ch::encode_data_object(o, oplan, {7, "h", "[heap]", 0x1000, 0x2000, "rw-p"});
    bytes e2;
    e2.le(std::uint64_t(7)).str("h").str("[heap]").le(std::uint64_t(0x1000)).le(std::uint64_t(0x2000)).str("rw-p");
    CHECK(o.view() == e2.s);
}

TEST_CASE("a RowBinary payload reads back and re-encodes into other column types")
{
    ch::column_type dt64{ch::type_kind::datetime64, false, 9}, dt{ch::type_kind::datetime};
    ch::rowbinary_buffer in;
    in.put_cell(dt64, ch::cell::of_time_ns(1'700'000'001'999'999'999ull));
    in.put_cell({ch::type_kind::uint16}, ch::cell::of_unsigned(513));
    ch::rowbinary_reader r(in.view());
    ch::cell a, b;
    REQUIRE(r.read_cell(dt64, a));
    REQUIRE(r.read_cell({ch::type_kind::uint16}, b));
    CHECK(r.at_end());
    ch::rowbinary_buffer out;
    out.put_cell(dt, a);
    out.put_cell({ch::type_kind::uint64}, b);
    bytes expected;
    expected.le(std::uint32_t(1'700'000'001)).le(std::uint64_t(513));
    CHECK(out.view() == expected.s);
    ch::rowbinary_reader truncated(in.view().substr(0, 5));
    CHECK_FALSE(truncated.read_cell(dt64, a));
}

TEST_CASE("the spool keeps batches in order across a restart and continues the sequence")
{
    temp_dir dir;
    {
        ch::spool s(dir.path(), 1 << 20);
        for (int i = 0; i < 3; ++i) {
            ch::batch b;
            b.sequence = s.take_sequence();
            b.table = "ms_raw_samples";
            b.columns = "ip UInt64";
            b.token = "t" + std::to_string(i);
            b.rows = 1;
            b.payload = std::string(8, char('a' + i));
            REQUIRE(s.fits(b));
            s.push(b);
        }
        CHECK(s.size() == 3);
    }
    ch::spool s(dir.path(), 1 << 20);
    REQUIRE(s.size() == 3);
    CHECK(s.take_sequence() == 4);
    for (int i = 0; i < 3; ++i) {
        auto b = s.front();
        REQUIRE(b.has_value());
        CHECK(b->token == "t" + std::to_string(i));
        CHECK(b->payload == std::string(8, char('a' + i)));
        CHECK(b->columns == "ip UInt64");
        s.pop(b->sequence);
    }
    CHECK(s.empty());
    CHECK(s.bytes() == 0);
}

TEST_CASE("a spooled batch with a flipped byte fails its checksum, is quarantined and counted")
{
    temp_dir dir;
    {
        ch::spool s(dir.path(), 1 << 20);
        ch::batch b;
        b.sequence = s.take_sequence();
        b.table = "ms_raw_samples";
        b.columns = "ip UInt64";
        b.token = "x";
        b.rows = 1;
        b.payload = std::string(8, 'z');
        s.push(b);
    }
    auto path = dir.path() / "00000000000000000001.batch";
    REQUIRE(std::filesystem::exists(path));
    {
        std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(-1, std::ios::end);
        f.put('y');
    }
    ch::spool reopened(dir.path(), 1 << 20);
    CHECK_FALSE(reopened.front().has_value());
    CHECK(reopened.corrupt() == 1);
    CHECK(std::filesystem::exists(dir.path() / "quarantine" / "00000000000000000001.batch.corrupt"));
}

TEST_CASE("the spool is bounded: a batch that would exceed max bytes does not fit")
{
    temp_dir dir;
    ch::spool s(dir.path(), 200);
    ch::batch b;
    b.sequence = s.take_sequence();
    b.table = "t";
    b.columns = "c UInt8";
    b.rows = 100;
    b.payload = std::string(100, 'p');
    REQUIRE(s.fits(b));
    s.push(b);
    b.sequence = s.take_sequence();
    CHECK_FALSE(s.fits(b));
}

TEST_CASE("a spool directory is used by one writer at a time")
{
    temp_dir dir;
    ch::spool first(dir.path(), 1 << 20);
    CHECK_THROWS_WITH_AS(ch::spool(dir.path(), 1 << 20), doctest::Contains("in use by another writer"), ch::spool_error);
}
