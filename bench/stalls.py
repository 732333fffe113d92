#!/usr/bin/env python3
"""Stall episodes in kvbench latency logs (`kvbench run --latency-log FILE`).

A stall is a stretch of wall-clock time in which requests that normally take about the median
all take several times longer: consecutive slow requests (latency > FACTOR x median) whose
intervals overlap form one episode. Prints, per log, the share of all request time spent in
slow requests, the episodes' count and their period, and the episode ends modulo 100 ms (a
constant phase points at a periodic cause outside the program, such as CPU bandwidth control).
Given several logs of drivers that ran side by side, episodes at the same wall-clock times in
all of them point at a cause both servers or the whole machine share.

usage: stalls.py [--factor F] LOG...
"""
import argparse
import statistics


def episodes(rows, slow_ms):
    found = []
    for start, latency in rows:
        if latency <= slow_ms:
            continue
        end = start + latency / 1000
        if found and start <= found[-1][1] + 0.001:
            found[-1][1] = max(found[-1][1], end)
            found[-1][2] += 1
        else:
            found.append([start, end, 1])
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factor", type=float, default=2.5)
    ap.add_argument("--min-requests", type=int, default=4,
                    help="slow requests an episode needs to count as a stall")
    ap.add_argument("logs", nargs="+")
    args = ap.parse_args()
    for path in args.logs:
        rows = []
        with open(path) as f:
            for line in f:
                start, latency = line.split()
                rows.append((float(start), float(latency)))
        if not rows:
            print(f"{path}: empty")
            continue
        rows.sort()
        lat = [r[1] for r in rows]
        median = statistics.median(lat)
        slow_ms = args.factor * median
        total = sum(lat)
        slow_share = sum(x for x in lat if x > slow_ms) / total
        stalls = [e for e in episodes(rows, slow_ms) if e[2] >= args.min_requests]
        span = rows[-1][0] - rows[0][0]
        print(f"{path}: {len(rows)} requests over {span:.1f} s, median {median:.2f} ms, "
              f"mean {total / len(rows):.2f} ms; {100 * slow_share:.1f}% of request time in "
              f"requests over {slow_ms:.2f} ms")
        if len(stalls) < 2:
            print(f"  {len(stalls)} stall episode(s)")
            continue
        gaps = [b[0] - a[0] for a, b in zip(stalls, stalls[1:])]
        lengths = [1000 * (e[1] - e[0]) for e in stalls]
        ends = " ".join(f"{(e[1] % 0.1) * 1000:.0f}" for e in stalls[:20])
        print(f"  {len(stalls)} stall episodes, median period {1000 * statistics.median(gaps):.0f}"
              f" ms, median length {statistics.median(lengths):.1f} ms")
        print(f"  first ends, ms past a 100 ms boundary: {ends}")


if __name__ == "__main__":
    main()
