#!/usr/bin/env bash
# Build mimalloc 2.0.9 (Debian bookworm's source package, the version behind libmimalloc-dev) as a
# Windows DLL with mingw-w64 and install it into a prefix for cross builds of relib:
#
#   tools/mingw-w64-mimalloc.sh build/mingw-w64-deps
#   cmake -S . -B build/windows --toolchain cmake/mingw-w64.cmake -DCMAKE_PREFIX_PATH=$PWD/build/mingw-w64-deps
#
# Installs include/mimalloc-2.0/, lib/cmake/mimalloc-2.0/ (find_package(mimalloc 2.0), target
# mimalloc), lib/libmimalloc.dll.a and bin/libmimalloc.dll. The DLL imports only system DLLs, so
# it is the only file a test program needs next to it under Wine.
set -euo pipefail

usage() { echo "usage: $0 <prefix>" >&2; exit 2; }
die() { echo "$0: $*" >&2; exit 1; }
if [ $# -ne 1 ] || [ -z "$1" ]; then usage; fi

readonly MI_UPSTREAM=2.0.9
readonly MI_DEBIAN_RE='^2\.0\.9\+ds-'   # any Debian revision of 2.0.9+ds
readonly MI_CMAKE_DIR=lib/cmake/mimalloc-2.0

script_dir=$(cd "$(dirname "$0")" && pwd)
toolchain="$script_dir/../cmake/mingw-w64.cmake"
[ -f "$toolchain" ] || die "toolchain file not found: $toolchain"

mkdir -p "$1"
prefix=$(cd "$1" && pwd)

# Idempotent: a complete install is left alone.
if [ -f "$prefix/bin/libmimalloc.dll" ] && [ -f "$prefix/$MI_CMAKE_DIR/mimalloc-config.cmake" ]; then
  echo "mimalloc $MI_UPSTREAM (mingw-w64) already installed in $prefix"
  exit 0
fi

# Scratch space next to the prefix (never the repository root): apt-get source output, build, log.
work="$(dirname "$prefix")/$(basename "$prefix")-mimalloc-src"
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

src_version() {
  apt-cache showsrc mimalloc 2>/dev/null | awk '/^Version: /{print $2}' | grep -E "$MI_DEBIAN_RE" | sort -V | tail -n 1 || true
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

# Reuse a tree extracted by an earlier, interrupted run; otherwise fetch the source package.
src_dir="$work/mimalloc-$MI_UPSTREAM+ds"
if [ ! -f "$src_dir/CMakeLists.txt" ]; then
  version=$(src_version)
  if [ -z "$version" ]; then
    # No source index for mimalloc: add a deb-src entry unless one exists, then update.
    added=no
    if ! grep -qsE '^[[:space:]]*(deb-src[[:space:]]|Types:.*deb-src)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
      add_deb_src; added=yes
    fi
    run "${sudo_cmd[@]}" apt-get update -qq
    version=$(src_version)
    # The existing deb-src entries do not carry bookworm's mimalloc: add ours after all.
    if [ -z "$version" ] && [ "$added" = no ] && [ ! -e /etc/apt/sources.list.d/relib-deb-src.sources ]; then
      add_deb_src
      run "${sudo_cmd[@]}" apt-get update -qq
      version=$(src_version)
    fi
    [ -n "$version" ] || die "apt knows no source package mimalloc $MI_UPSTREAM+ds-* (see $log)"
  fi
  command -v dpkg-source >/dev/null || die "dpkg-source missing: apt-get install dpkg-dev"
  echo "fetching mimalloc $version source (apt-get source)"
  rm -rf "$src_dir"
  # dpkg-source applies debian/patches while extracting (2.0.9+ds-2 has none).
  (cd "$work" && run apt-get source -qq "mimalloc=$version")
  [ -f "$src_dir/CMakeLists.txt" ] || die "apt-get source did not produce $src_dir"
fi

# 2.0.9 installs every file of the shared target to lib/ (install(TARGETS ... DESTINATION lib)),
# DLL included. Send the DLL (RUNTIME) to bin/ like any Windows package, so the exported target
# points there too. Edits only our scratch copy; the grep checks the rule still looks as expected.
# shellcheck disable=SC2016 # ${...} are CMake variables, not shell ones
sed -i 's|^\( *install(TARGETS mimalloc EXPORT mimalloc\) DESTINATION \(${mi_install_libdir}\) LIBRARY)$|\1 RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} LIBRARY DESTINATION \2 ARCHIVE DESTINATION \2)|' \
  "$src_dir/CMakeLists.txt"
# shellcheck disable=SC2016
grep -qF 'RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}' "$src_dir/CMakeLists.txt" ||
  die "unexpected install rule in $src_dir/CMakeLists.txt"

# Shared library only, no malloc override and no mimalloc-redirect.dll (Debian drops bin/ anyway).
# -static: mingw's GCC implements __thread with emutls from libgcc_s_seh-1.dll, which in turn
# needs libwinpthread-1.dll; linking both statically leaves only system DLL imports.
echo "building mimalloc $MI_UPSTREAM for x86_64-w64-mingw32 (log: $log)"
build="$work/build"
rm -rf "$build"
run cmake -S "$src_dir" -B "$build" \
  --toolchain "$toolchain" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DCMAKE_SHARED_LINKER_FLAGS=-static \
  -DMI_BUILD_SHARED=ON \
  -DMI_BUILD_STATIC=OFF \
  -DMI_BUILD_OBJECT=OFF \
  -DMI_BUILD_TESTS=OFF \
  -DMI_OVERRIDE=OFF \
  -DMI_WIN_REDIRECT=OFF
run cmake --build "$build" --parallel "$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"
run cmake --install "$build"

if [ ! -f "$prefix/bin/libmimalloc.dll" ] || [ ! -f "$prefix/$MI_CMAKE_DIR/mimalloc-config.cmake" ]; then
  die "install into $prefix is incomplete (see $log)"
fi
echo "mimalloc $MI_UPSTREAM (mingw-w64) installed in $prefix"
