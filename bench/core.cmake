add_executable(rollup_bench ${CMAKE_CURRENT_LIST_DIR}/rollup_bench.cpp)
target_link_libraries(rollup_bench PRIVATE microsentinel microsentinel_warnings benchmark::benchmark)
