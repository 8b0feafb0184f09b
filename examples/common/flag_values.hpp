#pragma once
// Parsing flag values for the example binaries: one error type whose message
// names the flag and what it needs.
#include <charconv>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace microsentinel::examples {

class usage_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

inline std::uint64_t parse_number(std::string_view flag, std::string_view v)
{
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || end != v.data() + v.size() || v.empty())
        throw usage_error(std::string(flag) + " needs a non-negative integer, got '" + std::string(v) + "'");
    return n;
}

inline std::uint64_t parse_positive(std::string_view flag, std::string_view v)
{
    std::uint64_t n = parse_number(flag, v);
    if (n == 0)
        throw usage_error(std::string(flag) + " needs a positive integer, got 0");
    return n;
}

} // namespace microsentinel::examples
