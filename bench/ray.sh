# bench/ray.sh - the ray section: `loadgen net --ray` at 200k pps across a 3-node Ray cluster in
# network namespaces, senders on two nodes and the receiver on the third (issue 15).
# Sourced by bench.sh, which sets the settings and runs it under `set -euo pipefail`.
# Optional: not part of `all` (it needs ray, and a cluster is heavy on a small machine).
# The cluster, the run and its table are bench/ray.py's; this only checks and dispatches.
#   BENCH_RAY_PPS=200k   the run's total rate (split evenly over the two sending nodes)
#   BENCH_RAY_PREFIX=... the namespaces' names start with this (default lgb-ray-PID)

bench_ray() {
    [[ $EUID -eq 0 ]] || { log "ray: skipped: needs root (network namespaces)"; return 0; }
    python3 -c 'import ray' 2>/dev/null || { log "ray: skipped: needs ray (pip install 'loadgen[ray]')"; return 0; }
    local t
    for t in ip taskset unshare nsenter; do
        command -v "$t" >/dev/null 2>&1 || { log "ray: skipped: needs $t"; return 0; }
    done
    start_results
    find_loadgen
    [[ ${#LOADGEN[@]} -gt 0 ]] || { log "ray: loadgen cannot run"; return 3; }
    print_machine
    printf '  %-12s %s\n' \
        ray         "$(python3 -c 'import ray; print(ray.__version__)')" \
        loadgen     "$(loadgen_version)" \
        load        "$(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min load average before the run)"
    echo
    python3 -m bench.ray run --out "$RESULTS_DIR" --pps "${BENCH_RAY_PPS:-200k}" --duration "$DURATION" \
        --ramp "$RAMP" ${BENCH_RAY_PREFIX:+--prefix "$BENCH_RAY_PREFIX"} | tee "$RESULTS_DIR/ray.summary.txt"
    echo
    echo "ray results: $RESULTS_DIR"
}
