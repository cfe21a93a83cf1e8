#!/usr/bin/env bash
# The install tests (ctest label `install`), one mode each:
#
#   install_test.sh tree    SOURCE_DIR BUILD_DIR WORK_DIR
#     `cmake --install` into WORK_DIR/prefix; the exported CMake package must
#     name no internal target; tests/install/external is configured against
#     the prefix (find_package(courier)), builds with every installed header
#     compiled alone, and runs; the same program is then built with one g++
#     line from `pkg-config --cflags --libs courier`, and runs.
#   install_test.sh package SOURCE_DIR BUILD_DIR WORK_DIR
#     cpack builds the Debian package; dpkg installs it into the real system
#     (root only, else skipped); `courier --help` and the external project
#     run against /usr; dpkg removes it and nothing of it may remain. The
#     package is removed on every exit path.
#
# WORK_DIR is the test's own folder, emptied first and removed on success.
# Its path is fixed (under the build folder) so that ccache, with
# CCACHE_BASEDIR set to it, hits on the external builds from one run to the
# next.
set -euo pipefail

mode=$1 source_dir=$2 build_dir=$3 work=$4
external="$source_dir/tests/install/external"
skip=77

rm -rf "$work"
mkdir -p "$work"
export CCACHE_BASEDIR="$work" CCACHE_NOHASHDIR=1
ccache=()
launcher=()
if command -v ccache >/dev/null; then
  ccache=(ccache)
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Runs the external program with a node directory of its own and checks its
# reply. $1: the program.
run_external() {
  local out
  mkdir -p "$work/directory"
  out=$("$1" "$work/directory")
  echo "$1: $out"
  [[ $out == "pong: hello from outside" ]] || fail "$1 printed '$out'"
}

# Configures, builds and runs tests/install/external. $1: its build folder;
# $2: the folder its find_package(courier) must find; the rest: cmake
# arguments.
build_external() {
  local dir=$1 config_dir=$2
  shift 2
  cmake -S "$external" -B "$dir" -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" \
    "$@" >"$dir.configure.log" 2>&1 || {
    cat "$dir.configure.log"
    fail "configuring the external project failed"
  }
  grep -qx "courier_DIR:PATH=$config_dir" "$dir/CMakeCache.txt" ||
    fail "find_package(courier) did not find $config_dir"
  cmake --build "$dir" -j 2 || fail "building the external project failed"
  run_external "$dir/courier_external"
}

tree() {
  local prefix="$work/prefix"
  cmake --install "$build_dir" --prefix "$prefix" >"$work/install.log"
  for f in lib/cmake/courier/courierConfig.cmake \
           lib/cmake/courier/courierConfigVersion.cmake \
           lib/cmake/courier/CourierProto.cmake lib/pkgconfig/courier.pc \
           bin/courier include/courier/courier.hpp; do
    [[ -e $prefix/$f ]] || fail "$f is not installed"
  done
  # Internal targets stay in the build tree.
  if grep -nE 'courier_internal|courier_cert|courier_test' \
      "$prefix"/lib/cmake/courier/courierTargets*.cmake; then
    fail "the exported targets name an internal target"
  fi
  if [[ -e $prefix/include/courier/v1 ]] || \
      find "$prefix/include" -path '*/src/*' | grep -q .; then
    fail "non-public headers are installed"
  fi

  build_external "$work/cmake-build" "$prefix/lib/cmake/courier" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCHECK_HEADERS=ON

  # pkg-config: protoc, then one g++ line.
  export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
  mkdir -p "$work/pc-build"
  protoc -I "$external" --cpp_out="$work/pc-build" "$external/ping/ping.proto"
  (cd "$work/pc-build" &&
    "${ccache[@]}" g++ -O1 -o courier_external "$external/main.cpp" \
      ping/ping.pb.cc -I. $(pkg-config --cflags --libs courier)) ||
    fail "the pkg-config build failed"
  run_external "$work/pc-build/courier_external"
}

package() {
  local name=courier-actors
  if [[ $(id -u) != 0 ]] || ! command -v dpkg >/dev/null; then
    echo "skipped: installing a Debian package needs root and dpkg"
    exit $skip
  fi
  local status
  status=$(dpkg-query -W -f='${Status}' "$name" 2>/dev/null || true)
  if [[ -n $status && $status != *not-installed ]]; then
    echo "skipped: dpkg knows $name already ($status); left alone"
    exit $skip
  fi
  for p in /usr/bin/courier /usr/include/courier /usr/lib/cmake/courier; do
    if [[ -e $p ]]; then
      echo "skipped: $p exists, and the package would replace it"
      exit $skip
    fi
  done

  # Global: the EXIT trap runs after this function has returned.
  installed=0
  cleanup() {
    if ((installed)); then
      dpkg -r "$name" >/dev/null 2>&1 || echo "could not remove $name" >&2
    fi
  }
  trap cleanup EXIT
  # A signal (ctest's timeout, Ctrl-C) ends the script through exit, so that
  # the EXIT trap removes the package.
  trap 'exit 1' INT TERM HUP

  (cd "$build_dir" && cpack -G DEB -B "$work/cpack" >"$work/cpack.log") || {
    cat "$work/cpack.log"
    fail "cpack failed"
  }
  local deb
  deb=$(ls "$work"/cpack/"$name"_*.deb)
  local depends
  depends=$(dpkg-deb -f "$deb" Depends)
  echo "Depends: $depends"
  # Declared (the -dev packages) and found by dpkg-shlibdeps (what the CLI
  # runs with).
  for dep in libcaf-dev libprotobuf-dev protobuf-compiler libssl-dev \
             libcaf-core0.17 libprotobuf32 libssl3 libc6; do
    [[ $depends == *"$dep"* ]] || fail "the package does not depend on $dep"
  done

  installed=1
  dpkg -i "$deb" || fail "dpkg -i failed"
  local files
  files=$(dpkg -L "$name")
  grep -qx /usr/bin/courier <<<"$files" || fail "no /usr/bin/courier"

  /usr/bin/courier --help >"$work/help.txt" || fail "courier --help failed"
  grep -q "Usage" "$work/help.txt" || fail "courier --help says no usage"
  build_external "$work/cmake-build" /usr/lib/cmake/courier
  pkg-config --exists courier || fail "pkg-config finds no courier in /usr"

  dpkg -r "$name" || fail "dpkg -r failed"
  installed=0
  if dpkg -L "$name" >/dev/null 2>&1; then
    fail "dpkg still lists files of $name"
  fi
  local left=0
  while read -r f; do
    # Shared folders (/usr, /usr/lib...) stay; what the package put there
    # must not.
    if [[ -e $f && ! -d $f ]]; then
      echo "left behind: $f" >&2
      left=1
    fi
  done <<<"$files"
  for d in /usr/include/courier /usr/lib/cmake/courier; do
    [[ ! -e $d ]] || { echo "left behind: $d" >&2; left=1; }
  done
  ((left == 0)) || fail "the removed package left files behind"
}

"$mode"
rm -rf "$work"
echo "PASS"
