#!/usr/bin/env bash
# Build relib's dependencies for Windows with mingw-w64, from Debian bookworm's source packages (the
# versions behind libmimalloc-dev and libbenchmark-dev), and install them into a prefix for cross
# builds of relib:
#
#   tools/mingw-w64-deps.sh build/mingw-w64-deps            # mimalloc 2.0.9 (tests, examples)
#   tools/mingw-w64-deps.sh --bench build/mingw-w64-deps    # and Google Benchmark 1.7.1 (relib_bench)
#   cmake -S . -B build/windows --toolchain cmake/mingw-w64.cmake -DCMAKE_PREFIX_PATH=$PWD/build/mingw-w64-deps
#
# mimalloc installs include/mimalloc-2.0/, lib/cmake/mimalloc-2.0/ (find_package(mimalloc 2.0),
# target mimalloc), lib/libmimalloc.dll.a and bin/libmimalloc.dll. The DLL imports only system
# DLLs, so it is the only file a test program needs next to it under Wine. Google Benchmark installs
# a static library and lib/cmake/benchmark/ (find_package(benchmark), target benchmark::benchmark).
set -euo pipefail

usage() { echo "usage: $0 [--bench] <prefix>" >&2; exit 2; }
die() { echo "$0: $*" >&2; exit 1; }
with_bench=no
if [ "${1:-}" = --bench ]; then with_bench=yes; shift; fi
if [ $# -ne 1 ] || [ -z "$1" ]; then usage; fi

script_dir=$(cd "$(dirname "$0")" && pwd)
toolchain="$script_dir/../cmake/mingw-w64.cmake"
[ -f "$toolchain" ] || die "toolchain file not found: $toolchain"

mkdir -p "$1"
prefix=$(cd "$1" && pwd)

# Scratch space next to the prefix (never the repository root): apt-get source output, builds, log.
work="$(dirname "$prefix")/$(basename "$prefix")-src"
mkdir -p "$work"
log="$work/build.log"
: >"$log"

# Run a command with its output in the log; show the log if it fails.
run() {
  if ! "$@" >>"$log" 2>&1; then
    echo "$0: failed: $*" >&2
    echo "---- $log ----" >&2
    cat "$log" >&2
    exit 1
  fi
}

# apt needs root; CI runs as root or with passwordless sudo (-n: never prompt).
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo -n)
export DEBIAN_FRONTEND=noninteractive

# The newest version of source package $1 that matches the regular expression $2.
src_version() {
  apt-cache showsrc "$1" 2>/dev/null | awk '/^Version: /{print $2}' | grep -E "$2" | sort -V | tail -n 1 || true
}

add_deb_src() {
  echo "adding deb-src entry for bookworm main (/etc/apt/sources.list.d/relib-deb-src.sources)"
  printf '%s\n' \
    'Types: deb-src' \
    'URIs: http://deb.debian.org/debian' \
    'Suites: bookworm' \
    'Components: main' \
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
    "${sudo_cmd[@]}" tee /etc/apt/sources.list.d/relib-deb-src.sources >/dev/null
}

# Extracts source package $1, version matching $2 (a regular expression), into $work/$3 unless an
# earlier, interrupted run left it there.
fetch_source() {
  local package=$1 version_re=$2 tree="$work/$3" version added
  [ -f "$tree/CMakeLists.txt" ] && return 0
  version=$(src_version "$package" "$version_re")
  if [ -z "$version" ]; then
    # No source index for the package: add a deb-src entry unless one exists, then update.
    added=no
    if ! grep -qsE '^[[:space:]]*(deb-src[[:space:]]|Types:.*deb-src)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
      add_deb_src; added=yes
    fi
    run "${sudo_cmd[@]}" apt-get update -qq
    version=$(src_version "$package" "$version_re")
    # The existing deb-src entries do not carry bookworm's package: add ours after all.
    if [ -z "$version" ] && [ "$added" = no ] && [ ! -e /etc/apt/sources.list.d/relib-deb-src.sources ]; then
      add_deb_src
      run "${sudo_cmd[@]}" apt-get update -qq
      version=$(src_version "$package" "$version_re")
    fi
    [ -n "$version" ] || die "apt knows no source package $package matching $version_re (see $log)"
  fi
  command -v dpkg-source >/dev/null || die "dpkg-source missing: apt-get install dpkg-dev"
  echo "fetching $package $version source (apt-get source)"
  rm -rf "$tree"
  # dpkg-source applies debian/patches while extracting.
  (cd "$work" && run apt-get source -qq "$package=$version")
  [ -f "$tree/CMakeLists.txt" ] || die "apt-get source did not produce $tree"
}

# Configures the CMake project in $work/$1 for x86_64-w64-mingw32 (Release, installing into the
# prefix) with the further arguments, builds and installs it.
cross_build() {
  local tree="$work/$1" build="$work/$1-build"
  shift
  echo "building $(basename "$tree") for x86_64-w64-mingw32 (log: $log)"
  rm -rf "$build"
  run cmake -S "$tree" -B "$build" --toolchain "$toolchain" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$prefix" "$@"
  run cmake --build "$build" --parallel "$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"
  run cmake --install "$build"
}

build_mimalloc() {
  local tree=mimalloc-2.0.9+ds cmake_dir=lib/cmake/mimalloc-2.0
  # Idempotent: a complete install is left alone.
  if [ -f "$prefix/bin/libmimalloc.dll" ] && [ -f "$prefix/$cmake_dir/mimalloc-config.cmake" ]; then
    echo "mimalloc 2.0.9 (mingw-w64) already installed in $prefix"
    return 0
  fi
  fetch_source mimalloc '^2\.0\.9\+ds-' "$tree"   # any Debian revision of 2.0.9+ds
  # 2.0.9 installs every file of the shared target to lib/ (install(TARGETS ... DESTINATION lib)),
  # DLL included. Send the DLL (RUNTIME) to bin/ like any Windows package, so the exported target
  # points there too. Edits only our scratch copy; the grep checks the rule still looks as expected.
  # shellcheck disable=SC2016 # ${...} are CMake variables, not shell ones
  sed -i 's|^\( *install(TARGETS mimalloc EXPORT mimalloc\) DESTINATION \(${mi_install_libdir}\) LIBRARY)$|\1 RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} LIBRARY DESTINATION \2 ARCHIVE DESTINATION \2)|' \
    "$work/$tree/CMakeLists.txt"
  # shellcheck disable=SC2016
  grep -qF 'RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}' "$work/$tree/CMakeLists.txt" ||
    die "unexpected install rule in $work/$tree/CMakeLists.txt"
  # Shared library only, no malloc override and no mimalloc-redirect.dll (Debian drops bin/ anyway).
  # -static: mingw's GCC implements __thread with emutls from libgcc_s_seh-1.dll, which in turn
  # needs libwinpthread-1.dll; linking both statically leaves only system DLL imports.
  cross_build "$tree" -DCMAKE_SHARED_LINKER_FLAGS=-static -DMI_BUILD_SHARED=ON -DMI_BUILD_STATIC=OFF \
    -DMI_BUILD_OBJECT=OFF -DMI_BUILD_TESTS=OFF -DMI_OVERRIDE=OFF -DMI_WIN_REDIRECT=OFF
  if [ ! -f "$prefix/bin/libmimalloc.dll" ] || [ ! -f "$prefix/$cmake_dir/mimalloc-config.cmake" ]; then
    die "mimalloc's install into $prefix is incomplete (see $log)"
  fi
  echo "mimalloc 2.0.9 (mingw-w64) installed in $prefix"
}

build_benchmark() {
  local tree=benchmark-1.7.1 config=lib/cmake/benchmark/benchmarkConfig.cmake
  if [ -f "$prefix/lib/libbenchmark.a" ] && [ -f "$prefix/$config" ]; then
    echo "Google Benchmark 1.7.1 (mingw-w64) already installed in $prefix"
    return 0
  fi
  fetch_source benchmark '^1\.7\.1-' "$tree"
  # Debian's patches take the version from GIT_VERSION (debian/rules passes it) instead of git tags.
  # A static library: the benchmark program then needs no further DLL beside it.
  cross_build "$tree" -DGIT_VERSION=1.7.1 -DBUILD_SHARED_LIBS=OFF -DBENCHMARK_ENABLE_TESTING=OFF \
    -DBENCHMARK_ENABLE_WERROR=OFF
  if [ ! -f "$prefix/lib/libbenchmark.a" ] || [ ! -f "$prefix/$config" ]; then
    die "Google Benchmark's install into $prefix is incomplete (see $log)"
  fi
  echo "Google Benchmark 1.7.1 (mingw-w64) installed in $prefix"
}

build_mimalloc
if [ "$with_bench" = yes ]; then build_benchmark; fi
