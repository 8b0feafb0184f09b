#pragma once
// Mapping the writer's fields onto the columns a server actually has.
//
// The writer reads system.columns before writing. A field whose column the
// server lacks is dropped (one warning per table, naming the migration that
// adds it); a column the writer does not know is left out of the INSERT column
// list, so the server fills its default; each field is encoded by the
// server's type for its column.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rowbinary.hpp"

namespace microsentinel::clickhouse {

// A server column as system.columns describes it.
struct server_column {
    std::string name;
    std::string type;         // as the server prints it
    std::string default_kind; // "", DEFAULT, MATERIALIZED or ALIAS
};

using server_table = std::vector<server_column>;

// One field the writer can fill, and the column names it goes into (the
// first that exists wins).
struct field_spec {
    std::string_view name;
    std::span<const std::string_view> aliases;
};

// The set of fields the writer knows for one table.
struct table_spec {
    std::string_view table;
    std::span<const field_spec> fields;
    std::string_view migration; // the migration that creates the newest fields
};

// A column the INSERT names: which field fills it, with which encoding.
struct mapped_column {
    std::size_t field;
    std::string name;
    column_type type;
};

struct column_plan {
    std::vector<mapped_column> columns;
    std::vector<std::string_view> dropped;     // writer fields without a usable column
    std::vector<std::string> server_defaulted; // server columns the writer leaves to their default
    std::vector<std::string> unsupported;      // "column Type" pairs the writer cannot encode

    bool empty() const noexcept { return columns.empty(); }

    // "(a,b,c)" for `INSERT INTO t (a,b,c) FORMAT RowBinary`.
    std::string column_list() const
    {
        std::string s = "(";
        for (std::size_t i = 0; i < columns.size(); ++i) {
            if (i)
                s += ',';
            s += quote_identifier(columns[i].name);
        }
        return s + ")";
    }

    // "name Type,name Type": stored with a spooled batch so it can be read back.
    std::string typed_column_list() const
    {
        std::string s;
        for (std::size_t i = 0; i < columns.size(); ++i) {
            if (i)
                s += ',';
            s += columns[i].name + ' ' + to_string(columns[i].type);
        }
        return s;
    }

    static std::string quote_identifier(std::string_view name)
    {
        std::string q = "`";
        for (char c : name) {
            if (c == '`' || c == '\\')
                q += '\\';
            q += c;
        }
        return q + "`";
    }
};

inline column_plan map_columns(const table_spec& spec, const server_table& server)
{
    column_plan plan;
    std::vector<bool> used(server.size(), false);
    for (std::size_t f = 0; f < spec.fields.size(); ++f) {
        const field_spec& field = spec.fields[f];
        std::optional<std::size_t> hit;
        auto find = [&](std::string_view name) {
            for (std::size_t c = 0; c < server.size(); ++c)
                if (!used[c] && server[c].name == name && server[c].default_kind != "MATERIALIZED" && server[c].default_kind != "ALIAS")
                    return std::optional<std::size_t>(c);
            return std::optional<std::size_t>();
        };
        hit = find(field.name);
        for (std::size_t a = 0; !hit && a < field.aliases.size(); ++a)
            hit = find(field.aliases[a]);
        if (!hit) {
            plan.dropped.push_back(field.name);
            continue;
        }
        auto type = parse_column_type(server[*hit].type);
        if (!type) {
            plan.dropped.push_back(field.name);
            plan.unsupported.push_back(server[*hit].name + " " + server[*hit].type);
            continue;
        }
        used[*hit] = true;
        plan.columns.push_back({f, server[*hit].name, *type});
    }
    for (std::size_t c = 0; c < server.size(); ++c)
        if (!used[c])
            plan.server_defaulted.push_back(server[c].name);
    return plan;
}

// The plan for a server that could not be asked: every field under its own
// name, typed as the current migrations create it. A batch spooled under it
// is re-encoded for the real schema once the server answers.
inline column_plan native_plan(const table_spec& spec, std::span<const column_type> native_types)
{
    column_plan plan;
    for (std::size_t f = 0; f < spec.fields.size(); ++f)
        plan.columns.push_back({f, std::string(spec.fields[f].name), native_types[f]});
    return plan;
}

// Parses "name Type,name Type" back (types may contain commas inside parentheses).
inline std::optional<std::vector<std::pair<std::string, column_type>>> parse_typed_column_list(std::string_view s)
{
    std::vector<std::pair<std::string, column_type>> out;
    while (!s.empty()) {
        std::size_t depth = 0, end = 0;
        for (; end < s.size(); ++end) {
            if (s[end] == '(')
                ++depth;
            else if (s[end] == ')')
                --depth;
            else if (s[end] == ',' && depth == 0)
                break;
        }
        std::string_view item = s.substr(0, end);
        auto space = item.find(' ');
        if (space == std::string_view::npos)
            return std::nullopt;
        auto type = parse_column_type(item.substr(space + 1));
        if (!type)
            return std::nullopt;
        out.emplace_back(std::string(item.substr(0, space)), *type);
        s.remove_prefix(end == s.size() ? end : end + 1);
    }
    return out;
}

// Parses the TabSeparated answer of
//   SELECT name, type, default_kind FROM system.columns WHERE ...
inline server_table parse_system_columns(std::string_view tsv)
{
    auto unescape = [](std::string_view v) {
        std::string out;
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (v[i] == '\\' && i + 1 < v.size()) {
                char n = v[++i];
                out += n == 't' ? '\t' : n == 'n' ? '\n' : n == '0' ? '\0' : n;
            } else {
                out += v[i];
            }
        }
        return out;
    };
    server_table table;
    while (!tsv.empty()) {
        auto nl = tsv.find('\n');
        std::string_view line = tsv.substr(0, nl);
        tsv.remove_prefix(nl == std::string_view::npos ? tsv.size() : nl + 1);
        if (line.empty())
            continue;
        server_column col;
        auto t1 = line.find('\t');
        col.name = unescape(line.substr(0, t1));
        if (t1 != std::string_view::npos) {
            line.remove_prefix(t1 + 1);
            auto t2 = line.find('\t');
            col.type = unescape(line.substr(0, t2));
            if (t2 != std::string_view::npos)
                col.default_kind = unescape(line.substr(t2 + 1));
        }
        table.push_back(std::move(col));
    }
    return table;
}

} // namespace microsentinel::clickhouse
