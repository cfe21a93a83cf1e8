#!/bin/sh
# `courier up` of a 10-node system: the time until every node has
# registered its names, as `courier up -d` reports it (from the
# supervisor's start until the last node's names are in the directory;
# the nodes start one after another, each once the one before is up),
# and the wall time of the whole `courier up -d` command.
#
#   bench/courier_up.sh [BUILD_DIR] [RUNS]     (defaults: build 5)
set -eu
build=${1:-build}
runs=${2:-5}
courier=$build/tools/courier
node=$build/tests/courier_test_node
work=$(mktemp -d /tmp/courier-up-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
{
  echo "name = \"bench10\""
  echo "directory = \"$work/dir\""
  echo "run_dir = \"$work/run\""
  for i in 0 1 2 3 4 5 6 7 8 9; do
    echo
    echo "[[nodes]]"
    echo "name = \"n$i\""
    echo "program = \"$(realpath "$node")\""
    echo "args = [\"--name\", \"bench-n$i\", \"echo.n$i\"]"
    echo "names = [\"echo.n$i\"]"
    echo "stop = \"stdin\""
  done
} >"$work/system.toml"
reported=""
walls=""
for run in $(seq "$runs"); do
  start=$(date +%s%N)
  line=$("$courier" up -d "$work/system.toml")
  end=$(date +%s%N)
  ms=$(echo "$line" | sed -n 's/.* nodes in \([0-9]*\) ms.*/\1/p')
  reported="$reported $ms"
  walls="$walls $(( (end - start) / 1000000 ))"
  "$courier" down "$work/system.toml" >/dev/null
done
median() { echo "$@" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "10 nodes, $runs runs"
echo "until every name is registered (ms):$reported  median $(median $reported)"
echo "wall time of courier up -d (ms):$walls  median $(median $walls)"
