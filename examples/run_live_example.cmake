# Runs a live example (live_reload, hot_reload) unattended, the way a person uses it: the host
# runs, the module's source is edited and rebuilt with CMake, and the running host takes the new
# build. The `demo` target and the examples' tests run it as
#   cmake -DEXAMPLE=<name> -DHOST=<host executable> -DSOURCE_DIR=<the example's directory>
#         -DRELIB_SOURCE_DIR=<relib> -DWORK_DIR=<scratch directory> -DGENERATOR=<generator>
#         -DCXX_COMPILER=<compiler> -DBUILD_TYPE=<type> -DMIMALLOC_DIR=<mimalloc_DIR>
#         -DCXX_FLAGS=<the host's CMAKE_CXX_FLAGS> -DMODULE_LINKER_FLAGS=<its CMAKE_MODULE_LINKER_FLAGS>
#         -DEDIT_FROM=<text in module.cpp> -DEDIT_TO=<its replacement> -DEXPECT=<regex>
#         -DMODULE_FILE=<the module's file name> [-DINCREASING=<regex with one group>]
#         [-DEMULATOR=<wine> -DTOOLCHAIN_FILE=<cmake/mingw-w64.cmake>] -P run_live_example.cmake
# A cross build for Windows passes the emulator and the toolchain: the module is cross-built too,
# the host runs under Wine, and its edit command starts the Linux cmake with Wine's `start /unix`.
# 1. module.cpp and the example's headers are copied into WORK_DIR/src, a project of its own that
#    pulls relib in with add_subdirectory(), and built into WORK_DIR/build (deleted first) with the
#    host's compiler and flags, so that both use the same standard library.
# 2. The host runs that build of the module. After a second it runs this script again with
#    -DSTEP=edit, in the background while its frames go on: the copy of module.cpp gets the edit
#    and `cmake --build` writes the new module over the old one. The host stops after the first
#    reload, or fails when none comes within two minutes.
# 3. The host's output must show EXPECT after its "[host] reloading" line and not before, and no
#    "reload failed"; the numbers INCREASING captures must keep growing across the reload (the
#    state went on, it did not start over).
cmake_minimum_required(VERSION 3.25)

# Keeps the steps' output out of the way unless they fail.
function(run_step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "${name} failed (${code}):\n${output}")
  endif()
endfunction()

if(STEP STREQUAL "edit")  # run by the host: the source changes, then a real rebuild
  file(READ "${WORK_DIR}/module.cpp.edited" text)
  file(WRITE "${WORK_DIR}/src/module.cpp" "${text}")
  execute_process(COMMAND ${CMAKE_COMMAND} --build "${WORK_DIR}/build" --target ${EXAMPLE}_module
                  RESULT_VARIABLE code)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "rebuilding ${EXAMPLE}_module failed (${code})")
  endif()
  return()
endif()

foreach(var EXAMPLE HOST SOURCE_DIR RELIB_SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER EDIT_FROM EDIT_TO EXPECT MODULE_FILE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_live_example.cmake: pass -D${var}=...")
  endif()
endforeach()
# The builds below are not part of the job server of a make running the demo target (a warning).
unset(ENV{MAKEFLAGS})
unset(ENV{MAKELEVEL})

file(REMOVE_RECURSE "${WORK_DIR}")
file(GLOB sources "${SOURCE_DIR}/module.cpp" "${SOURCE_DIR}/*.hpp")
file(COPY ${sources} DESTINATION "${WORK_DIR}/src")
file(WRITE "${WORK_DIR}/src/CMakeLists.txt"
     "cmake_minimum_required(VERSION 3.25)\nproject(${EXAMPLE}_scratch LANGUAGES CXX)\n"
     "add_subdirectory(\"${RELIB_SOURCE_DIR}\" relib)\nrelib_add_module(${EXAMPLE}_module module.cpp)\n")
file(READ "${WORK_DIR}/src/module.cpp" text)
string(FIND "${text}" "${EDIT_FROM}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${SOURCE_DIR}/module.cpp has no '${EDIT_FROM}' to edit")
endif()
string(REPLACE "${EDIT_FROM}" "${EDIT_TO}" text "${text}")
file(WRITE "${WORK_DIR}/module.cpp.edited" "${text}")

set(cross)
if(DEFINED TOOLCHAIN_FILE)
  set(cross -DCMAKE_TOOLCHAIN_FILE=${TOOLCHAIN_FILE})
endif()
run_step("configuring ${WORK_DIR}/src" ${CMAKE_COMMAND} -S "${WORK_DIR}/src" -B "${WORK_DIR}/build" ${cross}
         -G "${GENERATOR}" -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
         -Dmimalloc_DIR=${MIMALLOC_DIR} "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
         "-DCMAKE_MODULE_LINKER_FLAGS=${MODULE_LINKER_FLAGS}")
run_step("building ${EXAMPLE}_module" ${CMAKE_COMMAND} --build "${WORK_DIR}/build" --target ${EXAMPLE}_module)
message(STATUS "${EXAMPLE}: built ${WORK_DIR}/src/module.cpp; the host will change "
               "'${EDIT_FROM}' to '${EDIT_TO}' in it and rebuild it while it runs")

# The host hands this to std::system(): a shell command line, or under Wine a cmd.exe one that
# starts a Linux shell (no quotes there: `start` would take the first as a window title).
if(DEFINED EMULATOR)  # through a shell script: cmake started directly by Wine cannot find its own files
  file(WRITE "${WORK_DIR}/edit.sh" "exec \"${CMAKE_COMMAND}\" -DSTEP=edit -DEXAMPLE=${EXAMPLE} \"-DWORK_DIR=${WORK_DIR}\" -P \"${CMAKE_CURRENT_LIST_FILE}\"\n")
  set(edit "start /wait /unix /bin/sh ${WORK_DIR}/edit.sh")
else()
  set(edit "\"${CMAKE_COMMAND}\" -DSTEP=edit -DEXAMPLE=${EXAMPLE} \"-DWORK_DIR=${WORK_DIR}\"")
  string(APPEND edit " -P \"${CMAKE_CURRENT_LIST_FILE}\"")
endif()
# Run from the module's directory and named by file name: Wine does not translate arguments.
execute_process(COMMAND ${EMULATOR} "${HOST}" "${MODULE_FILE}" --reloads 1 --edit "${edit}"
                WORKING_DIRECTORY "${WORK_DIR}/build"
                RESULT_VARIABLE code OUTPUT_VARIABLE output ERROR_VARIABLE output
                ECHO_OUTPUT_VARIABLE ECHO_ERROR_VARIABLE)
if(NOT code EQUAL 0)
  message(FATAL_ERROR "${EXAMPLE} failed (${code})")
endif()

# The checks: the new behaviour shows, only after the reload; nothing went wrong; the state went on.
string(FIND "${output}" "[host] reloading" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${EXAMPLE} never reloaded")
endif()
string(SUBSTRING "${output}" 0 ${at} before)
string(SUBSTRING "${output}" ${at} -1 after)
if(before MATCHES "${EXPECT}" OR NOT after MATCHES "${EXPECT}")
  message(FATAL_ERROR "${EXAMPLE}: '${EXPECT}' should show after the reload, and only then")
endif()
if(output MATCHES "reload failed")
  message(FATAL_ERROR "${EXAMPLE}: a reload failed")
endif()
if(DEFINED INCREASING)
  if(NOT before MATCHES "${INCREASING}" OR NOT after MATCHES "${INCREASING}")
    message(FATAL_ERROR "${EXAMPLE}: '${INCREASING}' should show before and after the reload")
  endif()
  string(REGEX MATCHALL "${INCREASING}" matches "${output}")  # a list: match no lone [ or ]
  set(previous -1)
  foreach(match IN LISTS matches)
    string(REGEX REPLACE "${INCREASING}" "\\1" number "${match}")
    if(NOT number GREATER previous)
      message(FATAL_ERROR "${EXAMPLE}: '${match}' came after ${previous}: the state started over")
    endif()
    set(previous ${number})
  endforeach()
endif()
