# relib_add_module(<name> [sources...])
#
# Builds <name> as a relib module: a shared library (lib<name>.so) with position independent code,
# hidden visibility (only relib's entry points are exported), and -fno-gnu-unique, without which
# GCC marks inline static data STB_GNU_UNIQUE and glibc can never unload the library.
# Link the module with other libraries as usual: target_link_libraries(<name> PRIVATE ...).
function(relib_add_module name)
  add_library(${name} MODULE ${ARGN})
  target_link_libraries(${name} PRIVATE relib::module)
  set_target_properties(${name} PROPERTIES
    POSITION_INDEPENDENT_CODE ON
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fno-gnu-unique>)
  endif()
endfunction()
