#pragma once
// Migration files on disk, what a server has applied (ms_schema_migrations),
// and the plan between the two.
#include <microsentinel/clickhouse/http.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "sql_script.hpp"

namespace microsentinel::migrate {

inline constexpr const char* bookkeeping_table = "ms_schema_migrations";
inline constexpr int minimum_major_version = 22;

struct migration {
    std::string name;                    // the file name, e.g. "0001_baseline.sql"
    std::string checksum;                // of the file's bytes, to notice edits
    std::vector<std::string> statements; // as they will be sent
};

// 64-bit FNV-1a, in hex: stable across builds and platforms.
inline std::string checksum_of(std::string_view bytes)
{
    std::uint64_t h = 14695981039346656037ull;
    for (unsigned char c : bytes) {
        h ^= c;
        h *= 1099511628211ull;
    }
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    return hex;
}

// Every *.sql file of `dir` in file-name order, split into statements and, with
// a cluster name, rewritten for ON CLUSTER.
inline std::vector<migration> load_migrations(const std::filesystem::path& dir, const std::string& cluster = {})
{
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
        throw sql_error("migrations directory " + dir.string() + " does not exist; pass --migrations DIR");
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir))
        if (entry.is_regular_file() && entry.path().extension() == ".sql")
            files.push_back(entry.path());
    if (files.empty())
        throw sql_error("no .sql files in " + dir.string() + "; pass --migrations DIR");
    std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a.filename() < b.filename(); });

    std::vector<migration> out;
    for (const auto& path : files) {
        std::ifstream in(path, std::ios::binary);
        std::stringstream text;
        text << in.rdbuf();
        if (!in)
            throw sql_error("cannot read " + path.string());
        migration m;
        m.name = path.filename().string();
        m.checksum = checksum_of(text.str());
        try {
            m.statements = split_statements(text.str());
            if (!cluster.empty())
                for (auto& s : m.statements)
                    s = for_cluster(s, cluster);
        } catch (const sql_error& e) {
            throw sql_error(path.string() + ": " + e.what());
        }
        if (m.statements.empty())
            throw sql_error(path.string() + " has no statements");
        out.push_back(std::move(m));
    }
    return out;
}

// "24.3.1.2" -> 24; 0 if unreadable.
inline int major_version(std::string_view version)
{
    int major = 0;
    for (char c : version) {
        if (c < '0' || c > '9')
            break;
        major = major * 10 + (c - '0');
    }
    return major;
}

inline std::string bookkeeping_ddl(const std::string& cluster)
{
    std::string ddl = std::string("CREATE TABLE IF NOT EXISTS ") + bookkeeping_table +
                      " (name String, checksum String, statements UInt32, applied_at DateTime DEFAULT now())"
                      " ENGINE = ReplacingMergeTree ORDER BY name";
    return cluster.empty() ? ddl : for_cluster(ddl, cluster);
}

// name -> checksum of what the server recorded; empty if it never ran migrations.
inline std::map<std::string, std::string> applied_migrations(clickhouse::client& c)
{
    std::map<std::string, std::string> applied;
    if (c.execute(std::string("EXISTS TABLE ") + bookkeeping_table) != "1\n")
        return applied;
    std::istringstream rows(c.execute(std::string("SELECT name, argMax(checksum, applied_at) FROM ") +
                                      bookkeeping_table + " GROUP BY name FORMAT TSV"));
    std::string line;
    while (std::getline(rows, line)) {
        auto tab = line.find('\t');
        if (tab != std::string::npos)
            applied[line.substr(0, tab)] = line.substr(tab + 1);
    }
    return applied;
}

// A value for a TSV row: migration names and checksums need no escaping, but
// a file name could hold a tab or a backslash.
inline std::string tsv_escape(std::string_view s)
{
    std::string out;
    for (char c : s) {
        switch (c) {
        case '\t': out += "\\t"; break;
        case '\n': out += "\\n"; break;
        case '\\': out += "\\\\"; break;
        default: out += c;
        }
    }
    return out;
}

inline void record_applied(clickhouse::client& c, const migration& m)
{
    c.execute(std::string("INSERT INTO ") + bookkeeping_table + " (name, checksum, statements) FORMAT TSV",
              tsv_escape(m.name) + '\t' + m.checksum + '\t' + std::to_string(m.statements.size()) + '\n');
}

} // namespace microsentinel::migrate
