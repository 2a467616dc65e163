# Toolchain file: build relib hosts and modules for 64-bit Windows with mingw-w64 (GCC, posix
# threads), on Linux, and run what was built under Wine.
#
#   cmake -S . -B build/windows --toolchain cmake/mingw-w64.cmake -DCMAKE_PREFIX_PATH=<mimalloc prefix>
#
# Debian: apt-get install g++-mingw-w64-x86-64 wine64. The posix flavour of the compiler is used:
# its C++ runtime has std::thread and thread_local destructors (winpthreads).
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(RELIB_MINGW_TRIPLET x86_64-w64-mingw32)

find_program(RELIB_MINGW_CC NAMES ${RELIB_MINGW_TRIPLET}-gcc-posix ${RELIB_MINGW_TRIPLET}-gcc REQUIRED)
find_program(RELIB_MINGW_CXX NAMES ${RELIB_MINGW_TRIPLET}-g++-posix ${RELIB_MINGW_TRIPLET}-g++ REQUIRED)
find_program(RELIB_MINGW_RC NAMES ${RELIB_MINGW_TRIPLET}-windres)
set(CMAKE_C_COMPILER ${RELIB_MINGW_CC})
set(CMAKE_CXX_COMPILER ${RELIB_MINGW_CXX})
if(RELIB_MINGW_RC)
  set(CMAKE_RC_COMPILER ${RELIB_MINGW_RC})
endif()

# Libraries and packages come from the mingw sysroot and CMAKE_PREFIX_PATH, programs from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${RELIB_MINGW_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# Test programs run under Wine. Debian installs the 64-bit loader in Wine's library directory.
find_program(RELIB_WINE NAMES wine64 wine PATHS /usr/lib/wine /usr/lib/x86_64-linux-gnu/wine NO_CMAKE_FIND_ROOT_PATH)
if(RELIB_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${RELIB_WINE})
endif()
