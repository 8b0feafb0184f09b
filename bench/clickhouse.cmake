# The ClickHouse writer: serialization, sustained insert into a local
# clickhouse-server started by the benchmark, and clickhouse-client's ceiling.
find_package(ZLIB REQUIRED)
add_executable(clickhouse_bench ${CMAKE_CURRENT_LIST_DIR}/clickhouse_bench.cpp)
target_link_libraries(clickhouse_bench PRIVATE MicroSentinel::clickhouse ZLIB::ZLIB microsentinel_warnings benchmark::benchmark)
target_include_directories(clickhouse_bench PRIVATE
  ${PROJECT_SOURCE_DIR}/tests/support ${PROJECT_SOURCE_DIR}/tests/clickhouse/support ${PROJECT_SOURCE_DIR}/examples/migrate)
target_compile_definitions(clickhouse_bench PRIVATE
  MS_SCHEMA_18_16="${PROJECT_SOURCE_DIR}/tests/clickhouse/schema_18_16.sql")
