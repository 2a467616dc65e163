# relib_add_module(<name> [sources...])
#
# Builds <name> as a relib module, lib<name>.so, with what unloading needs:
# - position independent code and hidden visibility;
# - -fno-gnu-unique with GCC: otherwise GCC marks inline statics STB_GNU_UNIQUE and glibc never
#   unloads the library (clang never makes such symbols);
# - the C++ runtime linked statically (-static-libstdc++: libstdc++, or libc++ under clang's
#   -stdlib=libc++) and a version script that exports only relib's entry points: the module's
#   copy of the runtime then allocates through the module, and nothing in it is shared with (or
#   pinned by) the rest of the process;
# - the unwinder shared (-shared-libgcc): libgcc_s.so.1, which every C++ process has and which
#   keeps no state about a module across its unload; linking it statically would add 15 KB;
# - -ffunction-sections -fdata-sections and --gc-sections, so that only the parts of that runtime
#   the module uses stay, and packed relative relocations (-z pack-relative-relocs, glibc 2.36)
#   where the linker has them. A module of one function is 31 KB stripped;
# - --wrap for __cxa_throw and __cxa_free_exception: every throw in the module records where it
#   was thrown, which a call_error then shows (docs/diagnostics.md);
# - -z now: relib binds every symbol at load anyway, so the whole GOT can be read-only (full
#   RELRO) at no cost. The hardening of the distribution's linker stays (RELRO, separate code):
#   see docs/footprint.md for what each flag costs and buys.
# On Windows (mingw-w64) the module is lib<name>.dll, and the same aims take other flags:
# - the C++ runtime and the unwinder linked statically (-static-libstdc++ -static-libgcc), and
#   winpthreads shared (libwinpthread-1.dll): thread ids and pthread keys pass between host and
#   module, so both must use the one copy in the process;
# - --wrap for pthread_create, pthread_key_create, pthread_key_delete and __cxa_thread_atexit, on
#   top of the two above: a DLL binds its imports when it is linked, so the wrappers are how module
#   code reaches relib's replacements (relib_module.hpp, >>platform);
# - only relib's entry points exported (they are marked dllexport); no version script;
# - no --gc-sections: the PE linker would drop relib's records (section .relib), which nothing
#   references.
# Link the module with other libraries as usual: target_link_libraries(<name> PRIVATE ...).
# A global property, so the function works from any directory (add_subdirectory users call it
# from the parent project).
set_property(GLOBAL PROPERTY RELIB_MODULE_VERSION_SCRIPT "${CMAKE_CURRENT_LIST_DIR}/relib_module.map")

function(relib_add_module name)
  get_property(version_script GLOBAL PROPERTY RELIB_MODULE_VERSION_SCRIPT)
  add_library(${name} MODULE ${ARGN})
  target_link_libraries(${name} PRIVATE relib::module)
  if(WIN32)
    target_link_options(${name} PRIVATE -static-libstdc++ -static-libgcc
      "LINKER:--wrap=__cxa_throw" "LINKER:--wrap=__cxa_free_exception" "LINKER:--wrap=pthread_create"
      "LINKER:--wrap=pthread_key_create" "LINKER:--wrap=pthread_key_delete" "LINKER:--wrap=__cxa_thread_atexit")
    return()
  endif()
  set_target_properties(${name} PROPERTIES
    POSITION_INDEPENDENT_CODE ON
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS "${version_script}")
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fno-gnu-unique>)
  endif()
  target_compile_options(${name} PRIVATE -ffunction-sections -fdata-sections)
  target_link_options(${name} PRIVATE -static-libstdc++ -shared-libgcc
    "LINKER:--version-script=${version_script}" "LINKER:--gc-sections" "LINKER:-z,now"
    "LINKER:--wrap=__cxa_throw" "LINKER:--wrap=__cxa_free_exception")
  include(CheckLinkerFlag)  # checked once, then cached
  check_linker_flag(CXX "LINKER:-z,pack-relative-relocs" RELIB_LINKER_PACKS_RELOCATIONS)
  if(RELIB_LINKER_PACKS_RELOCATIONS)
    target_link_options(${name} PRIVATE "LINKER:-z,pack-relative-relocs")
  endif()
endfunction()
