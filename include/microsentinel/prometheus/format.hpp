#pragma once
// Which exposition format a scraper gets: OpenMetrics 1.0.0 when its Accept
// header prefers it, else the Prometheus text format 0.0.4.
#include <charconv>
#include <string_view>

namespace microsentinel::prometheus {

enum class exposition_format { text, openmetrics };

inline constexpr std::string_view text_content_type = "text/plain; version=0.0.4; charset=utf-8";
inline constexpr std::string_view openmetrics_content_type =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

constexpr std::string_view content_type(exposition_format f) noexcept
{
    return f == exposition_format::openmetrics ? openmetrics_content_type : text_content_type;
}

namespace detail {

constexpr std::string_view trim(std::string_view s) noexcept
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

constexpr bool iequals(std::string_view a, std::string_view b) noexcept
{
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i] >= 'A' && a[i] <= 'Z' ? char(a[i] - 'A' + 'a') : a[i];
        char y = b[i] >= 'A' && b[i] <= 'Z' ? char(b[i] - 'A' + 'a') : b[i];
        if (x != y)
            return false;
    }
    return true;
}

// The q parameter of one media range; 1 when absent, 0 when malformed.
inline double quality(std::string_view params) noexcept
{
    while (!params.empty()) {
        auto semi = params.find(';');
        std::string_view p = trim(params.substr(0, semi));
        params = semi == std::string_view::npos ? std::string_view{} : params.substr(semi + 1);
        auto eq = p.find('=');
        if (eq == std::string_view::npos || !iequals(trim(p.substr(0, eq)), "q"))
            continue;
        std::string_view v = trim(p.substr(eq + 1));
        double q = 0;
        auto r = std::from_chars(v.data(), v.data() + v.size(), q);
        return r.ec == std::errc{} && q >= 0 && q <= 1 ? q : 0.0;
    }
    return 1.0;
}

} // namespace detail

// Picks by the highest q of each format's media ranges; a tie goes to
// OpenMetrics, which the scraper named explicitly.
inline exposition_format negotiate_format(std::string_view accept) noexcept
{
    double openmetrics_q = 0;
    double text_q = 0;
    while (!accept.empty()) {
        auto comma = accept.find(',');
        std::string_view range = accept.substr(0, comma);
        accept = comma == std::string_view::npos ? std::string_view{} : accept.substr(comma + 1);
        auto semi = range.find(';');
        std::string_view type = detail::trim(range.substr(0, semi));
        double q = detail::quality(semi == std::string_view::npos ? std::string_view{} : range.substr(semi + 1));
        if (detail::iequals(type, "application/openmetrics-text")) {
            if (q > openmetrics_q)
                openmetrics_q = q;
        } else if (detail::iequals(type, "text/plain") || detail::iequals(type, "text/*") ||
                   detail::iequals(type, "*/*")) {
            if (q > text_q)
                text_q = q;
        }
    }
    return openmetrics_q > 0 && openmetrics_q >= text_q ? exposition_format::openmetrics : exposition_format::text;
}

} // namespace microsentinel::prometheus
