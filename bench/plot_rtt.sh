#!/bin/sh
# Round trip (p50) by tier and message size, as a PNG made with gnuplot.
#
#   bench/plot_rtt.sh [BUILD_DIR] [OUT_DIR]      (defaults: build docs)
#
# Runs, for 64 B, 4 KiB and 64 KiB:
#   - actor to actor in another process over the named pipe and over shared
#     memory (courier_bench_pipe --rtt-only), with raw AF_UNIX next to them,
#     on the sharing scheduler, and over shared memory on the latency
#     scheduler;
#   - the shared-memory tier without actors (courier_bench_shm_tier, hybrid
#     wait, processes on CPUs 0 and 1), with the raw ring + envelopes next
#     to it.
# Writes OUT_DIR/rtt_by_tier.dat and OUT_DIR/rtt_by_tier.png. Needs gnuplot
# (apt-get install gnuplot-nox); takes a few minutes.
set -eu

build=${1:-build}
out=${2:-docs}
runs=${RUNS:-3}
pipe_bench="$build/bench/transports/pipe/courier_bench_pipe"
tier_bench="$build/bench/transports/shm/courier_bench_shm_tier"
command -v gnuplot >/dev/null || {
  echo "plot_rtt.sh: gnuplot is missing (apt-get install gnuplot-nox)" >&2
  exit 1
}

# The value of "field" on the first line that contains every pattern given.
pick() { # pick FILE FIELD PATTERN...
  file=$1 field=$2
  shift 2
  line=$(cat "$file")
  for pattern in "$@"; do
    line=$(printf '%s\n' "$line" | grep -F -- "$pattern" || true)
  done
  printf '%s\n' "$line" | head -n 1 \
    | sed -n "s/.*\"$field\": \\([0-9.e+]*\\).*/\\1/p"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dat="$out/rtt_by_tier.dat"
printf '# size_bytes pipe_actor_us shm_actor_us raw_unix_us shm_link_us raw_ring_us shm_actor_latency_us\n' >"$dat"
for size in 64 4096 65536; do
  "$pipe_bench" --runs "$runs" --rounds 5000 --rtt-only --rtt-size "$size" \
    --tier pipe >"$tmp/pipe"
  "$pipe_bench" --runs "$runs" --rounds 5000 --rtt-only --rtt-size "$size" \
    --tier shm >"$tmp/shm"
  "$pipe_bench" --runs "$runs" --rounds 5000 --rtt-only --rtt-size "$size" \
    --tier shm --scheduler latency >"$tmp/shm_latency"
  "$tier_bench" --runs "$runs" --rounds 5000 --policy hybrid --size "$size" \
    --placement cross \
    >"$tmp/link"
  pipe=$(pick "$tmp/pipe" rtt_ns '"rtt_p50"' '"impl": "courier"')
  shm=$(pick "$tmp/shm" rtt_ns '"rtt_p50"' '"impl": "courier"')
  unix=$(pick "$tmp/pipe" rtt_ns '"rtt_p50"' '"impl": "raw"')
  link=$(pick "$tmp/link" rtt_p50_ns '"impl": "courier"')
  ring=$(pick "$tmp/link" rtt_p50_ns '"impl": "raw"')
  fast=$(pick "$tmp/shm_latency" rtt_ns '"rtt_p50"' '"impl": "courier"')
  echo "$size $pipe $shm $unix $link $ring $fast" | awk '{
    printf "%d %.2f %.2f %.2f %.2f %.2f %.2f\n", $1, $2/1000, $3/1000,
           $4/1000, $5/1000, $6/1000, $7/1000 }' >>"$dat"
done

gnuplot <<EOF
set terminal pngcairo size 900,560 font "sans,10" noenhanced
set output "$out/rtt_by_tier.png"
set title "Round trip p50 by tier and message size (2-core VM, medians of $runs runs)"
set logscale xy
set xlabel "message size (bytes)"
set ylabel "round trip p50 (µs)"
set xtics ("64 B" 64, "4 KiB" 4096, "64 KiB" 65536)
set key top left
set grid
plot "$dat" using 1:2 with linespoints lw 2 title "Courier actor to actor, named pipe (sharing scheduler)", \
     "" using 1:3 with linespoints lw 2 title "Courier actor to actor, shared memory (sharing scheduler)", \
     "" using 1:7 with linespoints lw 3 title "Courier actor to actor, shared memory, latency scheduler", \
     "" using 1:4 with linespoints dt 2 title "raw AF_UNIX socket", \
     "" using 1:5 with linespoints lw 2 title "Courier shm links + envelopes (no actors)", \
     "" using 1:6 with linespoints dt 2 title "raw shm ring + envelopes"
EOF
echo "wrote $out/rtt_by_tier.png and $dat"
