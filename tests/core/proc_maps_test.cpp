// /proc/<pid>/maps and /proc/<pid>/stat parsing, on text written here in the
// kernel's format (including the awkward cases: paths with spaces, deleted
// files, named anonymous mappings, a command name holding ") ").
#include <doctest/doctest.h>

#include <microsentinel/detail/procfs.hpp>
#include <microsentinel/proc_maps.hpp>

#include <string>

using microsentinel::holds_data_objects;
using microsentinel::kind_of;
using microsentinel::mapping_kind;
using microsentinel::parse_proc_maps;
using microsentinel::parse_proc_maps_line;

TEST_CASE("a maps line yields every field")
{
    const auto e = parse_proc_maps_line(
        "7f3a1c021000-7f3a1c023000 rw-p 0001c000 fd:01 1835127                    /usr/lib/x86_64-linux-gnu/libc.so.6");
    REQUIRE(e.has_value());
    CHECK(e->start == 0x7f3a1c021000ULL);
    CHECK(e->end == 0x7f3a1c023000ULL);
    CHECK(e->perms == "rw-p");
    CHECK(e->offset == 0x1c000);
    CHECK(e->dev_major == 0xfd);
    CHECK(e->dev_minor == 0x01);
    CHECK(e->inode == 1835127);
    CHECK(e->path == "/usr/lib/x86_64-linux-gnu/libc.so.6");
    CHECK(kind_of(*e) == mapping_kind::file);
    CHECK(holds_data_objects(*e));
}

TEST_CASE("a whole maps file is classified into data and non-data mappings")
{
    const std::string text = "55d0c8a00000-55d0c8a02000 r--p 00000000 08:02 393 /usr/bin/my server\n"
                             "55d0c8a02000-55d0c8a03000 r-xp 00002000 08:02 393 /usr/bin/my server\n"
                             "55d0c8a05000-55d0c8a06000 rw-p 00004000 08:02 393 /usr/bin/my server\n"
                             "55d0c9e4e000-55d0c9e6f000 rw-p 00000000 00:00 0                          [heap]\n"
                             "7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \n"
                             "7f0000200000-7f0000300000 rw-p 00000000 00:00 0    [anon:jemalloc arena]\n"
                             "7f0000400000-7f0000401000 rw-s 00000000 00:01 4242 /memfd:ring (deleted)\n"
                             "7f0000500000-7f0000501000 rw-s 00000000 00:0e 11 anon_inode:[perf_event]\n"
                             "7f0000600000-7f0000601000 r--p 00000000 00:00 0 \n"
                             "7ffd5a3c1000-7ffd5a3e2000 rw-p 00000000 00:00 0                          [stack]\r\n"
                             "7ffd5a3fa000-7ffd5a3fe000 r--p 00000000 00:00 0                          [vvar]\n"
                             "7ffd5a3fe000-7ffd5a400000 r-xp 00000000 00:00 0                          [vdso]\n"
                             "\n"
                             "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]";
    const auto maps = parse_proc_maps(text);
    CHECK(maps.malformed_lines == 0);
    REQUIRE(maps.entries.size() == 13);

    CHECK(maps.entries[0].path == "/usr/bin/my server");
    CHECK_FALSE(holds_data_objects(maps.entries[0]));
    CHECK_FALSE(holds_data_objects(maps.entries[1]));
    CHECK(holds_data_objects(maps.entries[2]));
    CHECK(maps.entries[2].offset == 0x4000);

    CHECK(kind_of(maps.entries[3]) == mapping_kind::heap);
    CHECK(holds_data_objects(maps.entries[3]));

    CHECK(maps.entries[4].path.empty());
    CHECK(kind_of(maps.entries[4]) == mapping_kind::anonymous);
    CHECK(holds_data_objects(maps.entries[4]));

    CHECK(maps.entries[5].path == "[anon:jemalloc arena]");
    CHECK(kind_of(maps.entries[5]) == mapping_kind::anonymous);

    CHECK(maps.entries[6].path == "/memfd:ring (deleted)");
    CHECK(maps.entries[6].perms == "rw-s");
    CHECK(holds_data_objects(maps.entries[6]));

    CHECK(kind_of(maps.entries[7]) == mapping_kind::other);
    CHECK_FALSE(holds_data_objects(maps.entries[7]));
    CHECK_FALSE(holds_data_objects(maps.entries[8])); // read-only anonymous

    CHECK(maps.entries[9].path == "[stack]");
    CHECK(kind_of(maps.entries[9]) == mapping_kind::stack);
    CHECK(holds_data_objects(maps.entries[9]));

    CHECK_FALSE(holds_data_objects(maps.entries[10]));
    CHECK_FALSE(holds_data_objects(maps.entries[11]));
    CHECK(maps.entries[12].start == 0xffffffffff600000ULL);
    CHECK(kind_of(maps.entries[12]) == mapping_kind::other);
}

TEST_CASE("lines that are not maps lines are counted, not guessed at")
{
    const std::string text = "garbage\n"
                             "7f00-7f10 rw-p 00000000 00:00\n"          // no inode
                             "7f00-7f10 rw-p zz000000 00:00 0\n"        // bad offset
                             "7f10-7f00 rw-p 00000000 00:00 0\n"        // end before start
                             "7f00-7f10 rw- 00000000 00:00 0\n"         // short perms
                             "7f007f10 rw-p 00000000 00:00 0\n"         // no dash
                             "7f00-7f10 rw-p 00000000 0000 0\n"         // no colon in device
                             "7f00-7f10 rw-p 00000000 00:00 12x [heap]\n" // bad inode
                             "7f00-7f10 rw-p 00000000 00:00 0 [heap]\n";
    const auto maps = parse_proc_maps(text);
    CHECK(maps.malformed_lines == 8);
    REQUIRE(maps.entries.size() == 1);
    CHECK(maps.entries[0].start == 0x7f00);
    CHECK(maps.entries[0].end == 0x7f10);
    CHECK(maps.entries[0].path == "[heap]");
}

TEST_CASE("the start time is field 22 of stat even when the command name holds spaces and parentheses")
{
    // Fields 3..52 of a stat line; field 22 (starttime) is 987654.
    std::string fields = "S";
    for (int field = 4; field <= 52; ++field)
        fields += " " + std::to_string(field == 22 ? 987654 : field * 10);
    const std::string stat = "4321 (evil) 1 2 (x)) " + fields + "\n";
    const auto start = microsentinel::detail::parse_proc_stat_start_time(stat);
    REQUIRE(start.has_value());
    CHECK(*start == 987654);

    CHECK_FALSE(microsentinel::detail::parse_proc_stat_start_time("4321 (short) S 1 2 3\n").has_value());
    CHECK_FALSE(microsentinel::detail::parse_proc_stat_start_time("no parenthesis at all").has_value());
}
