#pragma once
// Parser for /proc/<pid>/maps, and which of its mappings hold data objects.
//
// A line is "start-end perms offset major:minor inode [path]" with hex
// addresses, offset and device and a decimal inode. The path is everything
// after the inode and the spaces that pad it, so paths with spaces survive;
// it may be empty (anonymous), "[heap]", "[stack]", "[anon:name]", another
// kernel name ("[vdso]", "[vvar]", ...), or a file path, possibly ending in
// " (deleted)". Lines that do not have this shape are counted, not guessed at.
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace microsentinel {

struct proc_map_entry {
    std::uint64_t start = 0;
    std::uint64_t end = 0;
    std::string perms; // four characters, e.g. "rw-p"
    std::uint64_t offset = 0;
    std::uint32_t dev_major = 0;
    std::uint32_t dev_minor = 0;
    std::uint64_t inode = 0;
    std::string path;

    bool writable() const noexcept { return perms.size() >= 2 && perms[1] == 'w'; }
};

enum class mapping_kind {
    heap,      // [heap]
    stack,     // [stack] (and [stack:<tid>] on old kernels)
    anonymous, // no path, or [anon:<name>]
    file,      // an absolute path
    other,     // [vdso], [vvar], [vsyscall], anon_inode:..., ...
};

inline mapping_kind kind_of(const proc_map_entry& e) noexcept
{
    const std::string_view p = e.path;
    if (p.empty() || p.starts_with("[anon:"))
        return mapping_kind::anonymous;
    if (p == "[heap]")
        return mapping_kind::heap;
    if (p == "[stack]" || p.starts_with("[stack:"))
        return mapping_kind::stack;
    if (p.front() == '/')
        return mapping_kind::file;
    return mapping_kind::other;
}

// Writable heap, stack, anonymous and file-backed mappings hold data objects;
// code, read-only data and kernel-provided pages do not.
inline bool holds_data_objects(const proc_map_entry& e) noexcept
{
    return e.writable() && kind_of(e) != mapping_kind::other;
}

namespace detail {

template <class T>
bool parse_number(std::string_view s, T& out, int base) noexcept
{
    if (s.empty())
        return false;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
    return ec == std::errc{} && ptr == s.data() + s.size();
}

// Next space-delimited token; leading spaces skipped.
inline std::string_view next_token(std::string_view& rest) noexcept
{
    const auto first = rest.find_first_not_of(' ');
    if (first == std::string_view::npos) {
        rest = {};
        return {};
    }
    rest.remove_prefix(first);
    const auto space = rest.find(' ');
    const std::string_view token = rest.substr(0, space);
    rest.remove_prefix(space == std::string_view::npos ? rest.size() : space);
    return token;
}

} // namespace detail

// One line without its newline; nullopt when it is not a maps line.
inline std::optional<proc_map_entry> parse_proc_maps_line(std::string_view line)
{
    using detail::next_token;
    using detail::parse_number;
    std::string_view rest = line;
    const std::string_view range = next_token(rest);
    const std::string_view perms = next_token(rest);
    const std::string_view offset = next_token(rest);
    const std::string_view dev = next_token(rest);
    const std::string_view inode = next_token(rest);

    proc_map_entry e;
    const auto dash = range.find('-');
    const auto colon = dev.find(':');
    if (dash == std::string_view::npos || colon == std::string_view::npos || perms.size() != 4
        || !parse_number(range.substr(0, dash), e.start, 16) || !parse_number(range.substr(dash + 1), e.end, 16)
        || e.end < e.start || !parse_number(offset, e.offset, 16)
        || !parse_number(dev.substr(0, colon), e.dev_major, 16)
        || !parse_number(dev.substr(colon + 1), e.dev_minor, 16) || !parse_number(inode, e.inode, 10))
        return std::nullopt;
    e.perms = std::string(perms);
    const auto path_start = rest.find_first_not_of(' ');
    if (path_start != std::string_view::npos)
        e.path = std::string(rest.substr(path_start));
    return e;
}

struct proc_maps {
    std::vector<proc_map_entry> entries; // in file order (ascending addresses)
    std::size_t malformed_lines = 0;
};

inline proc_maps parse_proc_maps(std::string_view text)
{
    proc_maps out;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        if (line.find_first_not_of(' ') == std::string_view::npos)
            continue;
        if (auto e = parse_proc_maps_line(line))
            out.entries.push_back(std::move(*e));
        else
            ++out.malformed_lines;
    }
    return out;
}

} // namespace microsentinel
