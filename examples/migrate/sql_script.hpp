#pragma once
// SQL files as ClickHouse's HTTP interface needs them: one statement per
// request, comments gone, and, for a cluster, ON CLUSTER in every DDL statement.
#include <algorithm>
#include <cctype>
#include <regex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace microsentinel::migrate {

class sql_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Splits `sql` on the semicolons that end statements: those outside quoted
// strings, quoted identifiers and comments. Comments are dropped (they are not
// statements); empty statements are skipped.
inline std::vector<std::string> split_statements(std::string_view sql)
{
    std::vector<std::string> statements;
    std::string current;
    auto finish = [&] {
        auto first = current.find_first_not_of(" \t\r\n");
        if (first != std::string::npos) {
            auto last = current.find_last_not_of(" \t\r\n");
            statements.push_back(current.substr(first, last - first + 1));
        }
        current.clear();
    };
    auto line_of = [&](std::size_t offset) {
        return std::to_string(1 + std::count(sql.begin(), sql.begin() + static_cast<std::ptrdiff_t>(offset), '\n'));
    };

    std::size_t i = 0;
    while (i < sql.size()) {
        char c = sql[i];
        if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
            while (i < sql.size() && sql[i] != '\n')
                ++i;
        } else if (c == '/' && i + 1 < sql.size() && sql[i + 1] == '*') {
            auto end = sql.find("*/", i + 2);
            if (end == std::string_view::npos)
                throw sql_error("unterminated /* comment starting on line " + line_of(i));
            current += ' ';
            i = end + 2;
        } else if (c == '\'' || c == '"' || c == '`') {
            std::size_t start = i;
            current += c;
            ++i;
            while (true) {
                if (i >= sql.size())
                    throw sql_error(std::string("unterminated ") + (c == '\'' ? "string" : "quoted identifier") +
                                    " starting on line " + line_of(start));
                char d = sql[i];
                current += d;
                ++i;
                if (d == '\\' && i < sql.size()) {
                    current += sql[i];
                    ++i;
                } else if (d == c) {
                    break; // a doubled quote reopens at once, which is the same thing
                }
            }
        } else if (c == ';') {
            finish();
            ++i;
        } else {
            current += c;
            ++i;
        }
    }
    finish();
    return statements;
}

namespace detail {

// The words of a statement up to where its object name ends, with offsets.
struct word {
    std::string upper; // keyword in upper case, or the name as written
    std::size_t end;   // offset just past it
};

inline bool is_name_char(char c)
{
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '{' || c == '}';
}

// Reads one word at `i`: a bare word, or a quoted name with dots (`db`.`t`).
inline bool next_word(std::string_view s, std::size_t& i, word& out)
{
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i])))
        ++i;
    if (i >= s.size())
        return false;
    std::size_t start = i;
    while (i < s.size()) {
        char c = s[i];
        if (c == '`' || c == '"') {
            auto close = s.find(c, i + 1);
            if (close == std::string_view::npos)
                return false;
            i = close + 1;
        } else if (is_name_char(c)) {
            ++i;
        } else {
            break;
        }
    }
    if (i == start)
        return false;
    out.upper.clear();
    for (char c : s.substr(start, i - start))
        out.upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    out.end = i;
    return true;
}

// Whether ON CLUSTER appears outside quotes.
inline bool has_on_cluster(std::string_view s)
{
    std::string bare;
    char quote = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (quote) {
            if (c == '\\')
                ++i;
            else if (c == quote)
                quote = 0;
            bare += ' ';
        } else if (c == '\'' || c == '"' || c == '`') {
            quote = c;
            bare += ' ';
        } else {
            bare += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        }
    }
    static const std::regex on_cluster(R"(\bON\s+CLUSTER\b)");
    return std::regex_search(bare, on_cluster);
}

} // namespace detail

inline bool valid_cluster_name(std::string_view name)
{
    if (name.empty())
        return false;
    for (char c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
            return false;
    return true;
}

// The statement as it must run on `cluster`: the '{cluster}' macro of the
// cluster migrations becomes the name; a DDL statement without ON CLUSTER gets
// one after its object name; other statements (INSERT, SELECT) stay as they are.
inline std::string for_cluster(std::string_view statement, std::string_view cluster)
{
    if (!valid_cluster_name(cluster))
        throw sql_error("cluster name '" + std::string(cluster) + "' is not a plain name (letters, digits, _ - .)");
    std::string out(statement);
    if (out.find("{cluster}") != std::string::npos) {
        for (auto at = out.find("{cluster}"); at != std::string::npos; at = out.find("{cluster}", at + cluster.size()))
            out.replace(at, 9, cluster);
        return out;
    }
    if (detail::has_on_cluster(statement))
        return out;

    std::size_t i = 0;
    detail::word w;
    if (!detail::next_word(statement, i, w))
        return out;
    const std::string verb = w.upper;
    static constexpr std::string_view ddl[] = {"CREATE", "ALTER", "DROP", "TRUNCATE", "OPTIMIZE", "ATTACH", "DETACH"};
    if (std::find(std::begin(ddl), std::end(ddl), verb) == std::end(ddl)) {
        if (verb == "RENAME" || verb == "EXCHANGE" || verb == "GRANT" || verb == "REVOKE")
            throw sql_error("cannot place ON CLUSTER in a " + verb + " statement; write ON CLUSTER in the migration file");
        return out;
    }
    static constexpr std::string_view noise[] = {"OR", "REPLACE", "TEMPORARY", "TABLE", "DATABASE", "VIEW",
                                                 "MATERIALIZED", "LIVE", "DICTIONARY", "IF", "NOT", "EXISTS"};
    while (detail::next_word(statement, i, w)) {
        if (std::find(std::begin(noise), std::end(noise), w.upper) != std::end(noise))
            continue;
        out.insert(w.end, " ON CLUSTER '" + std::string(cluster) + "'");
        return out;
    }
    throw sql_error("cannot find the object name in: " + std::string(statement.substr(0, 60)));
}

} // namespace microsentinel::migrate
