#!/usr/bin/python3
"""Runs two builds of one benchmark alternately (A B A B ...) and compares.

    bench/ab_compare.py --rounds 4 OLD_BINARY NEW_BINARY -- BENCH_ARGS...

Each round runs OLD then NEW (or NEW then OLD, by turns, so that neither
always runs first on a warming machine) with the same arguments, reads
the JSON lines the benchmarks print, and reports for each measurement the
median over rounds of OLD, of NEW, and of the per-round ratio NEW/OLD. On a
noisy machine the ratio of runs made side by side is the figure to read.
"""
import json
import statistics
import subprocess
import sys

METRICS = ("rtt_p50_ns", "rtt_p99_ns", "msgs_per_s", "rtt_ns", "rtt_p50_ratio",
           "rtt_ns_ratio", "msgs_per_s_ratio", "calls_per_s_ratio",
           "posts_per_s_ratio")


def run(binary, args):
    out = subprocess.run([binary] + args, check=True, capture_output=True,
                         text=True).stdout
    found = {}
    for line in out.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        key = " ".join(str(record[k]) for k in
                       ("scenario", "tier", "impl", "size", "placement", "wait")
                       if k in record)
        for metric in METRICS:
            if metric in record:
                found[key + " " + metric] = float(record[metric])
    return found


def main():
    argv = sys.argv[1:]
    rounds = 4
    if argv[:1] == ["--rounds"]:
        rounds = int(argv[1])
        argv = argv[2:]
    old, new = argv[0], argv[1]
    args = argv[3:] if argv[2:3] == ["--"] else argv[2:]
    olds, news = [], []
    for i in range(rounds):
        if i % 2 == 0:
            olds.append(run(old, args))
            news.append(run(new, args))
        else:
            news.append(run(new, args))
            olds.append(run(old, args))
        print(f"round {i + 1}/{rounds} done", file=sys.stderr)
    print(f"# {rounds} rounds, alternating; args: {' '.join(args)}")
    print(f"{'measurement':70} {'old':>12} {'new':>12} {'new/old':>8}")
    for key in olds[0]:
        a = [r[key] for r in olds if key in r]
        b = [r[key] for r in news if key in r]
        ratios = [y / x for x, y in zip(a, b) if x != 0]
        if not ratios:
            continue
        print(f"{key:70} {statistics.median(a):12.4g} "
              f"{statistics.median(b):12.4g} {statistics.median(ratios):8.3f}")


if __name__ == "__main__":
    main()
