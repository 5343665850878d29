#!/usr/bin/env bash
# bench.sh - side-by-side benchmark of loadgen against a reference tool.
#
# Each section runs the same workloads with a well-known reference tool and
# with loadgen, on the same target, with the same settings, back to back, and
# prints one table comparing them. The script MEASURES ONLY: it never asserts
# anything about the numbers and exits 0 even when loadgen is slower. It
# exits non-zero only when a tool cannot run at all.
#
# Usage:
#   ./bench.sh disk     fio vs `loadgen disk` (io_uring, 4k random I/O), and both
#                       rate-limited at 50k and 2k IOPS: requested vs achieved
#                       and, as root, two hot_added zram devices in one run: fio with a job per
#                       device vs `loadgen disk --target A,B` (case two-targets), IOPS and CPU
#   ./bench.sh net      iperf3 and sockperf vs `loadgen net` (UDP, 127.0.0.1 only):
#                       64-byte blast, round-trip latency at 100k pps, loadgen
#                       rate accuracy at 10k/100k/300k pps; as root also trafgen
#                       vs loadgen across a veth pair between two namespaces
#   ./bench.sh pacing   what pacing costs: loadgen beside iperf3 -u (10k, 100k pps), fio
#                       --rate_iops (50k, 200k IOPS) and sockperf under-load (echo, 10k
#                       pps), with the CPU of each tool's whole process tree
#   ./bench.sh raw      root only: `loadgen net --engine packet` vs trafgen across veth
#                       pairs between two namespaces: --pps max against trafgen --cpus 1,
#                       1 and 2 senders on a 2-queue veth, and 100k pps paced
#   ./bench.sh all      every implemented section
#   ./bench.sh ray      root and ray only, not in `all`: `loadgen net --ray` at 200k pps across a
#                       3-node Ray cluster in namespaces (senders on two nodes, the receiver on
#                       the third): sent, received, loss and each node's section
#
# This file reads the settings and dispatches; the sections and their shell helpers are
# bench/{lib,disk,net,pacing,raw,ray}.sh. The tables come from bench/render.py and can be printed
# again from a stored results directory without re-running:
#   python3 -m bench.render dir bench-results/<timestamp>
#
# Environment (all optional):
#   BENCH_DURATION=10        measured seconds per run (each tool, each case)
#   BENCH_RAMP=1             warm-up seconds per run (not measured)
#   BENCH_RESULTS_DIR=...    where raw JSON goes (default bench-results/<timestamp>
#                            next to this script)
#   BENCH_TOOLS="fio iperf3 sockperf trafgen loadgen"  run only some tools (e.g. BENCH_TOOLS=fio)
#   BENCH_CASES=...          comma-separated subset of case names (see DISK_CASES,
#                            NET_CASES, PACING_CASES, RAW_CASES)
#   BENCH_ZRAM_SIZE=2G       size of the zram device (root only)
#   BENCH_TWO_ZRAM_SIZE=1G   size of each of the two-targets case's zram devices (root only)
#   BENCH_FILE_SIZE=1G       size of the fallback file target (no root / no zram)
#   BENCH_TARGET=...         use this existing file or block device instead of
#                            zram/tempfile. It is overwritten (fill + randwrite)!
#   BENCH_REPEAT=1           pacing: runs of each case (rows CASE.1, CASE.2, ...)
#   BENCH_DISK_PAIRS=3       disk: interleaved fio/loadgen pairs of each DISK_TUNED_CASES case
#   BENCH_RAW_PAIRS=3        raw: interleaved rounds of the veth, scale and wire cases
#   BENCH_NET_TUNED="--workers 1 --receivers 1"  flags of an extra loadgen blast row ("" for none)
#                            ("" = no extra row)

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DURATION=${BENCH_DURATION:-10}
RAMP=${BENCH_RAMP:-1}
TOOLS=${BENCH_TOOLS:-fio iperf3 sockperf trafgen loadgen}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$SCRIPT_DIR/bench-results/$(date +%Y%m%d-%H%M%S)}
ZRAM_SIZE=${BENCH_ZRAM_SIZE:-2G}
FILE_SIZE=${BENCH_FILE_SIZE:-1G}

# Make the in-tree package importable for `python3 -m loadgen` / version lookup.
export PYTHONPATH="$SCRIPT_DIR${PYTHONPATH:+:$PYTHONPATH}"

# The sections and their helpers live beside this script; this file only dispatches.
for part in lib disk net pacing raw ray; do
    # shellcheck source=/dev/null
    source "$SCRIPT_DIR/bench/$part.sh"
done

# ---------------------------------------------------------------- dispatch --

SECTIONS=(disk net pacing raw)   # implemented sections, in the order `all` runs them

usage() {
    local IFS='|'
    echo "usage: $0 {${SECTIONS[*]}|all|ray}" >&2
    echo "  env: BENCH_DURATION BENCH_RAMP BENCH_RESULTS_DIR BENCH_TOOLS BENCH_CASES" >&2
    echo "       BENCH_ZRAM_SIZE BENCH_FILE_SIZE BENCH_TARGET BENCH_NET_TUNED BENCH_REPEAT BENCH_DISK_PAIRS BENCH_RAW_PAIRS (see header of $0)" >&2
}

# Each section runs in its own subshell with its own cleanup trap, so `all`
# carries on with the next section even if one cannot run.
run_section() {
    (
        set -euo pipefail
        trap run_cleanup EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        "bench_$1"
    )
}

main() {
    local section=${1:-} s rc=0 r
    case $section in
        all)
            for s in "${SECTIONS[@]}"; do
                set +e; run_section "$s"; r=$?; set -e
                (( r == 0 )) || rc=$r
                case $r in 129|130|143) break ;; esac   # interrupted: stop there
            done ;;
        disk|net|pacing|raw|ray)   # ray: optional, not in `all`
            set +e; run_section "$section"; rc=$?; set -e ;;
        -h|--help|help)
            usage ;;
        *)
            usage; rc=1 ;;
    esac
    return "$rc"
}

main "$@"
