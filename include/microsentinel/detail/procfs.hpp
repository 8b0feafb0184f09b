#pragma once
// Reading /proc files without exceptions: a process can vanish, or be
// unreadable, between any two reads, and that is an expected outcome.
#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <unistd.h>

#include "../proc_maps.hpp"

namespace microsentinel::detail {

// Reads the whole file into out (reusing its capacity); 0 or the errno.
inline int read_whole_file(const std::string& path, std::string& out)
{
    out.clear();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    char buf[16384];
    int err = 0;
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
            out.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            err = errno;
        break;
    }
    ::close(fd);
    return err;
}

// Field 22 of /proc/<pid>/stat: the process start time in clock ticks after
// boot. The command name (field 2) is parenthesised and may itself contain
// spaces and parentheses, so fields are counted from the last ')'.
inline std::optional<std::uint64_t> parse_proc_stat_start_time(std::string_view stat)
{
    const auto close = stat.rfind(')');
    if (close == std::string_view::npos)
        return std::nullopt;
    std::string_view rest = stat.substr(close + 1);
    std::string_view field;
    for (int i = 3; i <= 22; ++i) {
        field = next_token(rest);
        if (field.empty())
            return std::nullopt;
    }
    while (!field.empty() && (field.back() == '\n' || field.back() == '\r'))
        field.remove_suffix(1);
    std::uint64_t start = 0;
    if (!parse_number(field, start, 10))
        return std::nullopt;
    return start;
}

} // namespace microsentinel::detail
