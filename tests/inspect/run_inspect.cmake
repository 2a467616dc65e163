# relib-inspect on the test modules, its JSON parsed with string(JSON): each kind of module gets
# the verdict and the fields it should.
#   cmake -DINSPECT=<relib-inspect> -DHOST=<relib_tests> -DMODULES=<the test modules' directory>
#         -DWORK_DIR=<scratch> -P run_inspect.cmake
cmake_minimum_required(VERSION 3.25)

set(failures "")
# expect(<what went wrong> <condition...>): the condition's words as if() takes them.
function(expect what)
  if(NOT (${ARGN}))
    set(failures "${failures}\n  ${what}" PARENT_SCOPE)
  endif()
endfunction()

# Runs relib-inspect --json [args] <file>; sets json, code (exit status) and text (the problems).
function(inspect file)
  execute_process(COMMAND ${INSPECT} --json ${ARGN} ${file} RESULT_VARIABLE code OUTPUT_VARIABLE json ERROR_VARIABLE error)
  string(JSON type ERROR_VARIABLE invalid TYPE "${json}")
  if(invalid)
    message(FATAL_ERROR "relib-inspect printed no JSON for ${file} (${code}): ${invalid}\n${json}${error}")
  endif()
  set(json "${json}" PARENT_SCOPE)
  set(code "${code}" PARENT_SCOPE)
  string(JSON problems ERROR_VARIABLE none GET "${json}" problems)
  string(JSON host_problems ERROR_VARIABLE none GET "${json}" host problems)
  set(text "${problems} ${host_problems}" PARENT_SCOPE)
endfunction()

# A good module, checked against the host that loads it: everything it records, and no problem.
inspect(${MODULES}/libtest_game.so --host ${HOST})
expect("libtest_game.so: exit status ${code}, expected 0: ${text}" code EQUAL 0)
string(JSON version GET "${json}" relib version)
string(JSON unloading GET "${json}" relib unloading)
string(JSON first_export GET "${json}" exports 0 name)
string(JSON first_signature GET "${json}" exports 0 signature)
string(JSON import_count LENGTH "${json}" imports)
string(JSON main GET "${json}" main signature)
string(JSON trusted GET "${json}" trusted)
string(JSON interface GET "${json}" host interface)
expect("libtest_game.so: relib version '${version}'" version MATCHES "^[0-9]+[.][0-9]+[.][0-9]+$")
# Signatures as the compiler spells them: GCC writes "int(int, int)" and "long int", clang
# "int (int, int)" and "long".
string(JSON compiler GET "${json}" relib compiler)
if(compiler MATCHES "^clang")
  set(gap " ")
  set(long "long")
else()
  set(gap "")
  set(long "long int")
endif()
expect("libtest_game.so: unloading ${unloading}" unloading STREQUAL "ON")
expect("libtest_game.so: first export ${first_export} ${first_signature}" first_export STREQUAL "add" AND first_signature STREQUAL "int${gap}(int, int)")
expect("libtest_game.so: ${import_count} imports, expected 4" import_count EQUAL 4)
expect("libtest_game.so: main ${main}" main STREQUAL "int${gap}()")
expect("libtest_game.so: not trusted" trusted STREQUAL "ON")
expect("libtest_game.so: compared with ${interface}" interface STREQUAL "game_exports")
string(JSON undefined_count LENGTH "${json}" undefined)
expect("libtest_game.so: ${undefined_count} undefined symbols" undefined_count GREATER 10)
string(JSON library GET "${json}" undefined 0 library)
expect("libtest_game.so: no library for its first undefined symbol" NOT library STREQUAL "null")

# State: type and version.
inspect(${MODULES}/libtest_live_v1.so)
string(JSON state_type GET "${json}" state type)
string(JSON state_version GET "${json}" state version)
expect("libtest_live_v1.so: state ${state_type} ${state_version}" state_type STREQUAL "live_state" AND state_version EQUAL 1)

# Each kind of bad module, and what relib-inspect says of it.
# GCC marks an inline function's static STB_GNU_UNIQUE (glibc then never unloads the library);
# clang never does.
if(compiler MATCHES "^gcc")
  set(unique_case "libtest_unique.so|STB_GNU_UNIQUE")
else()
  inspect(${MODULES}/libtest_unique.so)
  expect("libtest_unique.so: STB_GNU_UNIQUE reported for a clang module: ${text}" NOT text MATCHES "STB_GNU_UNIQUE")
  set(unique_case "")
endif()
foreach(case
    ${unique_case}
    "libtest_unique.so|links the C[+][+] runtime dynamically"
    "libtest_nodelete.so|DF_1_NODELETE"
    "libtest_thread_local_no_unloading.so|__cxa_thread_atexit_impl"
    "libtest_undefined_symbol.so|in none of its DT_NEEDED libraries")
  string(REPLACE "|" ";" parts "${case}")
  list(GET parts 0 file)
  list(GET parts 1 pattern)
  inspect(${MODULES}/${file})
  expect("${file}: exit status ${code}, expected 1" code EQUAL 1)
  expect("${file}: no problem matching '${pattern}' in ${text}" text MATCHES "${pattern}")
endforeach()

# Against the host: another relib version, another interface.
inspect(${MODULES}/libtest_fake_version.so --host ${HOST})
expect("libtest_fake_version.so: ${code} ${text}" code EQUAL 1 AND text MATCHES "version_mismatch")
inspect(${MODULES}/libtest_game_wrong.so --host ${HOST})
expect("libtest_game_wrong.so: ${code} ${text}" code EQUAL 1 AND text MATCHES "export 'add' is int${gap}[(]int, int[)] in the host but ${long}${gap}[(]${long}, ${long}[)] in the module")
string(JSON host_problem_count LENGTH "${json}" host problems)
expect("libtest_game_wrong.so: ${host_problem_count} problems, expected 17 (one per mismatch)" host_problem_count EQUAL 17)
inspect(${MODULES}/libtest_game.so --host ${MODULES}/libtest_plain_c.so)
expect("a host without records: ${code} ${text}" code EQUAL 1 AND text MATCHES "records no relib build")

# Not modules: a plain library, a text file. A module others may write: untrusted.
inspect(${MODULES}/libtest_plain_c.so)
string(JSON module GET "${json}" module)
expect("libtest_plain_c.so: ${code}, module ${module}" code EQUAL 2 AND module STREQUAL "OFF")
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
file(WRITE ${WORK_DIR}/notes.txt "not a module")
inspect(${WORK_DIR}/notes.txt)
string(JSON refusal GET "${json}" refusal)
expect("notes.txt: ${code} ${refusal}" code EQUAL 2 AND refusal MATCHES "ELF")
file(COPY ${MODULES}/libtest_minimal.so DESTINATION ${WORK_DIR}
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ GROUP_WRITE WORLD_READ WORLD_WRITE)
inspect(${WORK_DIR}/libtest_minimal.so)
string(JSON trusted GET "${json}" trusted)
expect("a world-writable module: ${code}, trusted ${trusted}" code EQUAL 1 AND trusted STREQUAL "OFF")

if(failures)
  message(FATAL_ERROR "relib-inspect:${failures}")
endif()
message(STATUS "relib-inspect: every verdict as expected")
