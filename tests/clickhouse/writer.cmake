# The ClickHouse writer's tests (included by CMakeLists.txt in this directory).
microsentinel_add_clickhouse_test(clickhouse_writer_format SOURCES writer_format_test.cpp)

microsentinel_add_clickhouse_test(clickhouse_writer_server SOURCES writer_server_test.cpp TIMEOUT 600)

if(TARGET micro_sentinel_ch_writer)
  microsentinel_add_clickhouse_test(clickhouse_writer_binary SOURCES writer_binary_test.cpp TIMEOUT 600)
  target_compile_definitions(clickhouse_writer_binary PRIVATE MS_CH_WRITER="$<TARGET_FILE:micro_sentinel_ch_writer>")
  add_dependencies(clickhouse_writer_binary micro_sentinel_ch_writer)
endif()

# On a current engine (chDB behind the HTTP interface; skips without node/chdb).
microsentinel_add_clickhouse_test(clickhouse_writer_chdb SOURCES writer_chdb_test.cpp LABELS chdb TIMEOUT 600)
target_compile_definitions(clickhouse_writer_chdb PRIVATE MS_MIGRATIONS_DIR="${PROJECT_SOURCE_DIR}/migrations")
