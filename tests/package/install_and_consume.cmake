# cmake -P script: install BUILD_DIR into WORK_DIR/prefix, then configure,
# build and run the consumer project against that prefix only.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} --component Unspecified)

# What docs/upgrade.md says `cmake --install build` puts in place.
foreach(installed
    bin/micro_sentinel_agent bin/micro_sentinel_loader bin/micro_sentinel_migrate
    bin/micro_sentinel_ch_writer bin/micro_sentinel_exporter
    ${LIBDIR}/microsentinel/micro_sentinel_kern.bpf.o
    ${LIBDIR}/microsentinel/micro_sentinel_kern.v1.bpf.o
    lib/systemd/system/micro-sentinel-bpf.service lib/systemd/system/micro-sentinel-agent.service
    share/microsentinel/migrations/202501_direction_and_data_objects.sql)
  if(NOT EXISTS ${prefix}/${installed})
    message(FATAL_ERROR "cmake --install did not install ${installed}")
  endif()
endforeach()
run(${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${WORK_DIR}/build
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer_core)
run(${WORK_DIR}/build/consumer_bpf)
message(STATUS "find_package(MicroSentinel) from ${prefix}: consumers built and ran")
