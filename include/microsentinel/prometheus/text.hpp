#pragma once
// Building blocks of both exposition formats: escaping and number formatting,
// appended to one output string so a scrape allocates only as it grows.
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace microsentinel::prometheus {

// Label values, in both formats: backslash, double quote and line feed.
inline void append_label_value(std::string& out, std::string_view value)
{
    if (value.find_first_of("\\\"\n") == std::string_view::npos) {
        out += value;
        return;
    }
    for (char c : value) {
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '"': out += "\\\""; break;
        case '\n': out += "\\n"; break;
        default: out += c;
        }
    }
}

// HELP text: the text format escapes only backslash and line feed (an escaped
// quote is an error there); OpenMetrics escapes the double quote as well.
inline void append_help_text(std::string& out, std::string_view text, bool escape_quote)
{
    for (char c : text) {
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '"':
            if (escape_quote)
                out += "\\\"";
            else
                out += c;
            break;
        default: out += c;
        }
    }
}

inline void append_uint(std::string& out, std::uint64_t v)
{
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

// Shortest text that parses back to the same double; NaN and infinities as
// both formats spell them.
inline void append_double(std::string& out, double v)
{
    if (std::isnan(v)) {
        out += "NaN";
        return;
    }
    if (std::isinf(v)) {
        out += v > 0 ? "+Inf" : "-Inf";
        return;
    }
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

} // namespace microsentinel::prometheus
