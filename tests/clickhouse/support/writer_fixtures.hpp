#pragma once
// What the ClickHouse tests and the writer's benchmark share: one server per
// binary, one-value answers as numbers, SQL files run statement by statement
// (the 18.16 pre-migration schema, the migrations), the writer's options for
// tests with its log captured, and little-endian bytes written field by field.
//
// Needs MS_SCHEMA_18_16 and examples/migrate on the include path
// (microsentinel_add_clickhouse_test sets both).
#include <microsentinel/clickhouse/writer.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "sql_script.hpp" // the splitter micro_sentinel_migrate applies SQL files with

#ifndef MS_SCHEMA_18_16
#error "MS_SCHEMA_18_16 must name tests/clickhouse/schema_18_16.sql (microsentinel_add_clickhouse_test defines it)"
#endif

namespace microsentinel::testing {

// One server for the whole binary: starting one costs seconds.
template <class Server>
Server& shared_server()
{
    static Server instance;
    return instance;
}

// An answer without its trailing newline.
inline std::string trim(std::string s)
{
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    return s;
}

// The answer to a one-value query, e.g. SELECT count(), as a number.
template <class Server>
std::uint64_t query_number(Server& server, const std::string& sql)
{
    return std::stoull(trim(server.query(sql)));
}

// Runs an SQL file verbatim, statement by statement.
template <class Server>
void run_sql_file(Server& server, const std::filesystem::path& file)
{
    std::ifstream in(file);
    if (!in)
        throw std::runtime_error("cannot read " + file.string());
    std::stringstream text;
    text << in.rdbuf();
    for (const auto& statement : migrate::split_statements(text.str()))
        server.query(statement);
}

template <class Server>
void drop_writer_tables(Server& server)
{
    for (const char* t : {"ms_raw_samples", "ms_flow_rollup", "ms_stack_traces", "ms_data_objects"})
        server.query(std::string("DROP TABLE IF EXISTS ") + t);
}

// Drops the writer's tables and creates the 18.16 pre-migration schema.
template <class Server>
void fresh_schema(Server& server)
{
    drop_writer_tables(server);
    run_sql_file(server, MS_SCHEMA_18_16);
}

// The writer's log lines, for the test to search.
struct captured_log {
    std::vector<std::string> lines;
    std::size_t count(std::string_view needle) const
    {
        std::size_t n = 0;
        for (const auto& l : lines)
            n += l.find(needle) != std::string::npos;
        return n;
    }
    std::string all() const
    {
        std::string s;
        for (const auto& l : lines)
            s += l + "\n";
        return s;
    }
};

// Writer options for tests: batches of 1000 rows, short backoff, the log into `log`.
inline clickhouse::writer_options test_writer_options(std::vector<std::string> urls, const std::filesystem::path& spool,
                                                      std::string host, captured_log& log)
{
    using namespace std::chrono_literals;
    clickhouse::writer_options o;
    o.urls = std::move(urls);
    o.spool_dir = spool;
    o.spool_max_bytes = 64u << 20;
    o.batch_rows = 1000;
    o.batch_bytes = 1u << 20;
    o.host = std::move(host);
    o.boot_to_wall_ns = 1'700'000'000'000'000'000;
    o.backoff_initial = 50ms;
    o.backoff_max = 500ms;
    o.log = [&log](std::string_view l) { log.lines.emplace_back(l); };
    return o;
}

// Little-endian bytes, field by field (RowBinary, the capture format).
struct le_bytes {
    std::string s;
    template <class T>
    le_bytes& le(T v)
    {
        for (std::size_t i = 0; i < sizeof(T); ++i)
            s += char((std::uint64_t(v) >> (8 * i)) & 0xff);
        return *this;
    }
    // A RowBinary string shorter than 128 bytes: one LEB128 length byte, then the bytes.
    le_bytes& str(std::string_view v)
    {
        s += char(v.size());
        s += v;
        return *this;
    }
};

} // namespace microsentinel::testing
