# Builds and runs the consumer project in this directory against relib, used one of two ways:
#   cmake -DMODE=install|subdirectory -DRELIB_SOURCE_DIR=<relib source> -DWORK_DIR=<scratch dir>
#         -DCXX_COMPILER=<c++ compiler> -DGENERATOR=<generator> [-DBUILD_TYPE=<type>]
#         [-DSTDLIB_FLAG=-stdlib=libc++] -P run_consumer.cmake
# install:      relib is configured and installed into WORK_DIR/prefix, then find_package()'d from there.
# subdirectory: the consumer pulls relib in with add_subdirectory().
# WORK_DIR is deleted first, so every run starts clean. Assumes a single-config generator.
cmake_minimum_required(VERSION 3.25)

foreach(var MODE RELIB_SOURCE_DIR WORK_DIR CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer.cmake: pass -D${var}=...")
  endif()
endforeach()

# Runs one step; on a non-zero exit, stops with the step's whole output.
function(run_step name)
  list(JOIN ARGN " " command)
  message(STATUS "${name}: ${command}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE output ERROR_VARIABLE output
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_STRIP_TRAILING_WHITESPACE)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "${name} failed (${code}):\n${output}")
  endif()
  set(step_output "${output}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(common -G "${GENERATOR}" -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
           "-DCMAKE_CXX_FLAGS=${STDLIB_FLAG}" "-DCMAKE_EXE_LINKER_FLAGS=${STDLIB_FLAG}"
           "-DCMAKE_MODULE_LINKER_FLAGS=${STDLIB_FLAG}")
set(consumer_build "${WORK_DIR}/build")

if(MODE STREQUAL "install")
  set(prefix "${WORK_DIR}/prefix")
  run_step("configure relib" ${CMAKE_COMMAND} -S "${RELIB_SOURCE_DIR}" -B "${WORK_DIR}/relib-build"
           ${common} -DRELIB_BUILD_EXAMPLES=OFF)
  run_step("build relib-inspect" ${CMAKE_COMMAND} --build "${WORK_DIR}/relib-build")
  run_step("install relib" ${CMAKE_COMMAND} --install "${WORK_DIR}/relib-build" --prefix "${prefix}")
  if(NOT EXISTS "${prefix}/bin/relib-inspect")
    message(FATAL_ERROR "relib-inspect was not installed with the headers")
  endif()
  # No package registry: the consumer must find relib in the prefix or nowhere.
  set(consumer_args -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
elseif(MODE STREQUAL "subdirectory")
  set(consumer_args -DCONSUMER_USE_SUBDIRECTORY=ON -DRELIB_SOURCE_DIR=${RELIB_SOURCE_DIR})
else()
  message(FATAL_ERROR "run_consumer.cmake: MODE must be install or subdirectory, not '${MODE}'")
endif()

run_step("configure consumer" ${CMAKE_COMMAND} -S "${CMAKE_CURRENT_LIST_DIR}" -B "${consumer_build}"
         ${common} ${consumer_args})
if(MODE STREQUAL "install")
  # Make sure the relib found is the one just installed, not one installed elsewhere.
  file(STRINGS "${consumer_build}/CMakeCache.txt" relib_dir REGEX "^relib_DIR:")
  string(REGEX REPLACE "^relib_DIR:[A-Z]*=" "" relib_dir "${relib_dir}")
  string(FIND "${relib_dir}" "${prefix}/" at)
  if(NOT at EQUAL 0)
    message(FATAL_ERROR "the consumer found relib in '${relib_dir}', not under ${prefix}")
  endif()
endif()
run_step("build consumer" ${CMAKE_COMMAND} --build "${consumer_build}")
run_step("run consumer_host" "${consumer_build}/consumer_host")
message(STATUS "${step_output}")
