# bench/net.sh - the net section: iperf3, sockperf and trafgen vs `loadgen net`.
# Sourced by bench.sh, which sets the settings and runs it under `set -euo pipefail`.

# ------------------------------------------------------------- net section --

# UDP datagrams on 127.0.0.1 only, except veth. name:kind:rate_pps
#   blast    iperf3, sockperf and loadgen as fast as they go (+ NET_TUNED row)
#   latency  round trips at a fixed rate: sockperf under-load vs loadgen echo
#   rate     loadgen alone at a fixed rate: requested vs achieved
#   veth     root only: trafgen vs loadgen blast across a veth pair between two
#            network namespaces this script creates (10.79.x.1/.2 on /30 inside
#            them only) and deletes again
NET_CASES=(
    "blast:blast:"
    "latency-100k:latency:100000"
    "rate-10k:rate:10000"
    "rate-100k:rate:100000"
    "rate-300k:rate:300000"
    "veth:veth:"
)
NET_SIZE=64
# An extra loadgen blast row with these flags (empty: no extra row). The default
# came out best of a few worker/receiver splits on a 2-CPU VM.
NET_TUNED=${BENCH_NET_TUNED-"--workers 1 --receivers 1"}

ensure_net_tools() {
    local missing=() t
    for t in iperf3 sockperf netsniff-ng; do
        command -v "$t" >/dev/null 2>&1 || [[ -x /usr/sbin/$t ]] || missing+=("$t")
    done
    if (( ${#missing[@]} )); then
        [[ $EUID -eq 0 ]] || die "${missing[*]} not installed and we are not root to install them"
        log "${missing[*]} not found, installing"
        { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; } >&2 \
            || log "warning: could not install ${missing[*]}"
    fi
    for t in iperf3 sockperf; do
        want_tool "$t" || continue
        command -v "$t" >/dev/null 2>&1 || die "$t still not available"
    done
}


free_port() {  # a port free for both TCP and UDP on 127.0.0.1, below the ephemeral range
    python3 -m bench.ports
}

wait_listen() {  # wait_listen tcp|udp PORT PID [NETNS]: until PORT listens (5 s at most)
    local proto=$1 port=$2 pid=$3 i ns=()
    [[ -n ${4:-} ]] && ns=(ip netns exec "$4")
    for (( i = 0; i < 50; i++ )); do
        bg_running "$pid" || return 1
        if command -v ss >/dev/null 2>&1; then
            [[ -n $("${ns[@]}" ss -Hnl "--$proto" "sport = :$port" 2>/dev/null) ]] && return 0
        elif (( i >= 10 )); then
            return 0   # no ss: assume 1 s is enough
        fi
        sleep 0.1
    done
    return 1
}


# Extra seconds the net peers (iperf3, sockperf) run beyond DURATION: the pacing section
# runs them as long as loadgen's ramp + duration, since they have no ramp of their own
# (iperf3 --omit miscounts UDP loss: lost_packets includes the omitted seconds' packets).
PEER_EXTRA_S=0

# run_iperf3 OUT.json [CLIENT ARGS...] -> 0 on success. The server serves one test (-1)
# and exits. Client args default to -b 0 (as fast as it goes).
run_iperf3() {
    local out=$1 base=${1%.json} port srv rc=0 rate=(-b 0); shift
    (( $# == 0 )) || rate=("$@")
    port=$(free_port) || return 1
    local scmd=(iperf3 -s -1 -p "$port" --json)
    local cmd=(iperf3 -u "${rate[@]}" -l "$NET_SIZE" -t "$(( DURATION + PEER_EXTRA_S ))" -c 127.0.0.1 -p "$port"
        --json)
    printf '%s\n' "${scmd[*]} &" "${cmd[*]}" > "$base.cmd"
    bg_start "$LIMIT_SERVER" "$base.server.json" "$base.server.err" "${scmd[@]}"
    srv=$BG_PID
    if ! wait_listen tcp "$port" "$srv"; then
        bg_stop "$srv" || true
        echo "iperf3 server did not start listening on $port" > "$base.err"
        return 1
    fi
    CPU_ROOTS=("$srv")
    run_bounded "$LIMIT_CLIENT" "$out" "$base.err" "${cmd[@]}" || rc=$?
    CPU_ROOTS=()
    bg_stop "$srv" TERM 5 || true
    return "$rc"
}

# run_sockperf OUT.txt MODE ARGS...: a sockperf server, then one sockperf client
# run (DURATION + PEER_EXTRA_S seconds); SIGINT makes the server print how many
# messages it received.
run_sockperf() {
    local out=$1 mode=$2 base=${1%.txt} port srv rc=0; shift 2
    port=$(free_port) || return 1
    local scmd=(sockperf server -i 127.0.0.1 -p "$port")
    local cmd=(sockperf "$mode" -i 127.0.0.1 -p "$port" -m "$NET_SIZE" -t "$(( DURATION + PEER_EXTRA_S ))" "$@")
    printf '%s\n' "${scmd[*]} &" "${cmd[*]}" > "$base.cmd"
    bg_start "$LIMIT_SERVER" "$base.server.txt" "$base.server.err" "${scmd[@]}"
    srv=$BG_PID
    if ! wait_listen udp "$port" "$srv"; then
        bg_stop "$srv" || true
        echo "sockperf server did not start listening on $port" > "$base.err"
        return 1
    fi
    CPU_ROOTS=("$srv")
    run_bounded "$LIMIT_CLIENT" "$out" "$base.err" "${cmd[@]}" || rc=$?
    CPU_ROOTS=()
    sleep 0.3   # let the server drain its socket before it counts
    bg_stop "$srv" INT || true
    return "$rc"
}

# run_loadgen_net OUT.json ARGS... -> 0 on success (embedded receiver on 127.0.0.1)
run_loadgen_net() {
    local out=$1; shift
    local cmd=("${LOADGEN[@]}" net --size "$NET_SIZE" --duration "${DURATION}s" --ramp "${RAMP}s"
        "$@" --json "$out" --quiet)
    echo "${cmd[*]}" > "${out%.json}.cmd"
    run_bounded "$LIMIT_CLIENT" "${out%.json}.out" "${out%.json}.err" "${cmd[@]}"
}

# veth case: two namespaces joined by a veth pair, named after this script's pid.
# Addresses exist only inside them. veth_down is idempotent and also registered
# to run at exit; it stops this section's processes first (some run in there).
VETH_TX=lgb-$$-tx VETH_RX=lgb-$$-rx VETH_NET=10.79.$(( RANDOM % 200 ))
VETH_TX_IP=$VETH_NET.1 VETH_RX_IP=$VETH_NET.2 VETH_PORT=9999 VETH_UP=0

veth_up() {  # veth_up [QUEUES]: QUEUES TX and RX queues on each end (default 1)
    local q=${1:-1}
    at_exit veth_down
    VETH_UP=1
    ip netns add "$VETH_TX" && ip netns add "$VETH_RX" &&
    ip link add "$VETH_TX" numtxqueues "$q" numrxqueues "$q" netns "$VETH_TX" type veth \
        peer name "$VETH_RX" numtxqueues "$q" numrxqueues "$q" netns "$VETH_RX" &&
    ip -n "$VETH_TX" addr add "$VETH_TX_IP/30" dev "$VETH_TX" &&
    ip -n "$VETH_RX" addr add "$VETH_RX_IP/30" dev "$VETH_RX" &&
    ip -n "$VETH_TX" link set "$VETH_TX" up && ip -n "$VETH_RX" link set "$VETH_RX" up &&
    ip -n "$VETH_TX" link set lo up && ip -n "$VETH_RX" link set lo up
}

veth_down() {
    (( VETH_UP )) || return 0
    net_stop_all
    ip netns del "$VETH_TX" 2>/dev/null || true
    ip netns del "$VETH_RX" 2>/dev/null || true
    VETH_UP=0
}

veth_stat() {  # veth_stat NS DEV COUNTER
    ip netns exec "$1" cat "/sys/class/net/$2/statistics/$3"
}

# veth_measure OUT.counters.json CMD...: CMD's run, bracketed by the veth counters
veth_measure() {
    local out=$1 rx0 tx0 drop0 rc=0; shift
    rx0=$(veth_stat "$VETH_RX" "$VETH_RX" rx_packets) || return 1
    tx0=$(veth_stat "$VETH_TX" "$VETH_TX" tx_packets) || return 1
    drop0=$(veth_stat "$VETH_TX" "$VETH_TX" tx_dropped) || return 1
    "$@" || rc=$?
    printf '{"rx_packets": %s, "tx_packets": %s, "tx_dropped": %s, "seconds": %s}\n' \
        "$(( $(veth_stat "$VETH_RX" "$VETH_RX" rx_packets) - rx0 ))" \
        "$(( $(veth_stat "$VETH_TX" "$VETH_TX" tx_packets) - tx0 ))" \
        "$(( $(veth_stat "$VETH_TX" "$VETH_TX" tx_dropped) - drop0 ))" "$DURATION" > "$out"
    return "$rc"
}

# run_trafgen_veth OUT.txt [CPUS]: trafgen in the tx namespace for DURATION s on CPUS
# CPUs (default 1), one Ethernet/IPv4/UDP frame with a NET_SIZE-byte payload to the rx
# veth's MAC, or to VETH_DA when set (the raw section's wire case).
VETH_DA=""
run_trafgen_veth() {
    local out=$1 base=${1%.txt} cpus=${2:-1} trafgen rx_mac=$VETH_DA tx_mac rc=0
    trafgen=$(PATH=$PATH:/usr/sbin command -v trafgen) || { echo "trafgen not found" > "$base.err"; return 1; }
    [[ -n $rx_mac ]] || rx_mac=$(ip -n "$VETH_RX" link show "$VETH_RX" | awk '/link\/ether/ {print $2}')
    tx_mac=$(ip -n "$VETH_TX" link show "$VETH_TX" | awk '/link\/ether/ {print $2}')
    [[ -n $rx_mac && -n $tx_mac ]] || { echo "no MAC on the veth pair" > "$base.err"; return 1; }
    cat > "$base.cfg" <<EOF
{
  eth(da=$rx_mac, sa=$tx_mac),
  ipv4(saddr=$VETH_TX_IP, daddr=$VETH_RX_IP, ttl=64),
  udp(sp=40000, dp=$VETH_PORT),
  fill(0x41, $NET_SIZE)
}
EOF
    local cmd=(ip netns exec "$VETH_TX" timeout -k 3 "$DURATION"
        "$trafgen" --dev "$VETH_TX" --conf "$base.cfg" --cpus "$cpus" --no-sock-mem --notouch-irq)
    echo "${cmd[*]}" > "$base.cmd"
    veth_measure "$base.counters.json" run_bounded "$LIMIT_CLIENT" "$out" "$base.err" "${cmd[@]}" || rc=$?
    (( rc == 124 )) && rc=0   # timeout ended it, as planned
    return "$rc"
}

# serve_veth BASE RECEIVERS: `loadgen serve` with RECEIVERS receivers in the rx namespace, on
# VETH_RX_IP:VETH_PORT for the run and 3 s more; SERVE_CMD is its command line, SERVE_PID its
# pid. 1 (BASE.err says why) when it does not start listening. With RX_PIN (a taskset prefix,
# see the raw section) its receivers stay on the CPUs it names; RX_FLAGS are more of its options.
RX_PIN=() RX_FLAGS=()
serve_veth() {
    local base=$1 receivers=$2
    SERVE_CMD=(ip netns exec "$VETH_RX" "${RX_PIN[@]}" "${LOADGEN[@]}" serve --port "$VETH_PORT" --host "$VETH_RX_IP"
        --duration "$(( DURATION + 3 ))s" --workers "$receivers" "${RX_FLAGS[@]}")
    bg_start "$LIMIT_SERVER" "$base.server.txt" "$base.server.err" "${SERVE_CMD[@]}"
    SERVE_PID=$BG_PID
    wait_listen udp "$VETH_PORT" "$SERVE_PID" "$VETH_RX" && return 0
    bg_stop "$SERVE_PID" || true
    echo "loadgen serve did not start listening on $VETH_RX_IP:$VETH_PORT" > "$base.err"
    return 1
}

# run_loadgen_target OUT.json ARGS...: `loadgen net --target` the rx veth's address and port from
# the tx namespace, bracketed by the veth counters; whatever listens there is the caller's.
run_loadgen_target() {
    local out=$1 base=${1%.json} rc=0; shift
    local cmd=(ip netns exec "$VETH_TX" "${LOADGEN[@]}" net --target "$VETH_RX_IP:$VETH_PORT" --size "$NET_SIZE"
        --duration "${DURATION}s" "$@" --json "$out" --quiet)
    echo "${cmd[*]}" > "$base.cmd"
    veth_measure "$base.counters.json" run_bounded "$LIMIT_CLIENT" "$base.out" "$base.err" "${cmd[@]}" || rc=$?
    return "$rc"
}

# run_loadgen_veth OUT.json: `loadgen serve` in the rx namespace, `loadgen net --pps max` in the tx one.
run_loadgen_veth() {
    local out=$1 rc=0
    serve_veth "${out%.json}" 1 || return 1
    run_loadgen_target "$out" --pps max --ramp 0s || rc=$?
    printf '%s\n' "${SERVE_CMD[*]} &" >> "${out%.json}.cmd"
    bg_stop "$SERVE_PID" INT 5 || true
    return "$rc"
}

bench_net() {
    ensure_net_tools
    start_results
    find_loadgen
    at_exit net_stop_all
    LIMIT_CLIENT=$(( DURATION + RAMP + 30 )) LIMIT_SERVER=$(( DURATION + RAMP + 60 ))
    local lg_state=ok
    if ! want_tool loadgen; then lg_state=skipped
    elif [[ ${#LOADGEN[@]} -eq 0 ]]; then lg_state=unavailable; fi

    print_machine
    printf '  %-12s %s\n' \
        iperf3      "$(tool_version iperf3 --version)" \
        sockperf    "$(tool_version sockperf --version)" \
        netsniff-ng "$(PATH=$PATH:/usr/sbin tool_version netsniff-ng --version) (trafgen: veth case only)" \
        loadgen     "$(loadgen_version) [${LOADGEN[*]:-loadgen: not available}]" \
        sockets     "rmem_default $(sysctl -n net.core.rmem_default 2>/dev/null || echo ?), rmem_max $(sysctl -n net.core.rmem_max 2>/dev/null || echo ?), netdev_max_backlog $(sysctl -n net.core.netdev_max_backlog 2>/dev/null || echo ?)" \
        target      "UDP on 127.0.0.1 (lo, mtu $(cat /sys/class/net/lo/mtu 2>/dev/null || echo ?)), ${NET_SIZE}-byte payloads" \
        duration    "${DURATION}s per run (loadgen: + ${RAMP}s ramp)" \
        load        "$(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min load average before the runs)"
    echo

    local manifest=$RESULTS_DIR/net.manifest.tsv spec name kind rate
    local ref_ok=0 ref_runs=0 lg_ok=0 lg_runs=0
    : > "$manifest"

    # net_run CASE KIND TOOL LABEL RATE OUT RUNNER ARGS...: one row of the manifest
    net_run() {
        local name=$1 kind=$2 tool=$3 label=$4 rate=$5 out=$6 st=skipped rc; shift 6
        [[ $tool == loadgen ]] && st=$lg_state
        if [[ $tool == loadgen && $st == ok ]] || { [[ $tool != loadgen ]] && want_tool "$tool"; }; then
            log "[$name] $label ..."
            if [[ $tool == loadgen ]]; then lg_runs=$((lg_runs + 1)); else ref_runs=$((ref_runs + 1)); fi
            if "$@"; then
                st=ok
                if [[ $tool == loadgen ]]; then lg_ok=$((lg_ok + 1)); else ref_ok=$((ref_ok + 1)); fi
            else
                rc=$?; st="failed(rc=$rc)"; log "  $tool failed (rc=$rc), see ${out%.*}.err"
            fi
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$kind" "$tool" "$label" "$st" "$out" "$rate" >> "$manifest"
    }

    for spec in "${NET_CASES[@]}"; do
        IFS=: read -r name kind rate <<<"$spec"
        want_case "$name" || continue
        local p=$RESULTS_DIR/net-$name
        case $kind in
        blast)
            net_run "$name" "$kind" iperf3 "iperf3 -u -b 0" "" "$p.iperf3.json" \
                run_iperf3 "$p.iperf3.json"
            net_run "$name" "$kind" sockperf "sockperf throughput" "" "$p.sockperf.txt" \
                run_sockperf "$p.sockperf.txt" throughput
            net_run "$name" "$kind" loadgen "loadgen (defaults)" "" "$p.loadgen.json" \
                run_loadgen_net "$p.loadgen.json" --pps max
            if [[ -n $NET_TUNED ]]; then
                # shellcheck disable=SC2086  # NET_TUNED is a list of flags
                net_run "$name" "$kind" loadgen "loadgen $NET_TUNED" "" "$p.loadgen-tuned.json" \
                    run_loadgen_net "$p.loadgen-tuned.json" --pps max $NET_TUNED
            fi ;;
        latency)
            # --full-rtt: sockperf otherwise reports half the round trip.
            net_run "$name" "$kind" sockperf "sockperf under-load (1 in 100 timed)" "$rate" \
                "$p.sockperf.txt" run_sockperf "$p.sockperf.txt" under-load --mps "$rate" --full-rtt
            net_run "$name" "$kind" sockperf "sockperf under-load --reply-every 1" "$rate" \
                "$p.sockperf-every.txt" run_sockperf "$p.sockperf-every.txt" under-load \
                --mps "$rate" --full-rtt --reply-every 1
            net_run "$name" "$kind" loadgen "loadgen --mode echo" "$rate" "$p.loadgen.json" \
                run_loadgen_net "$p.loadgen.json" --mode echo --pps "$rate" ;;
        rate)
            net_run "$name" "$kind" loadgen "loadgen --pps $rate" "$rate" "$p.loadgen.json" \
                run_loadgen_net "$p.loadgen.json" --pps "$rate" ;;
        veth)
            if [[ $EUID -ne 0 ]]; then
                log "[$name] skipped: needs root (network namespaces, veth, packet sockets)"; continue
            fi
            command -v ip >/dev/null 2>&1 || { log "[$name] skipped: no ip(8)"; continue; }
            veth_up || { log "[$name] skipped: could not create the namespaces/veth pair"; veth_down; continue; }
            net_run "$name" "$kind" trafgen "trafgen --cpus 1" "" "$p.trafgen.txt" \
                run_trafgen_veth "$p.trafgen.txt"
            net_run "$name" "$kind" loadgen "loadgen --pps max" "" "$p.loadgen.json" \
                run_loadgen_veth "$p.loadgen.json"
            veth_down ;;
        esac
    done

    render net "$manifest" | tee "$RESULTS_DIR/net.summary.txt"
    echo
    echo "raw results: $RESULTS_DIR"

    # Not an assertion on performance: only "the tool could not run at all".
    (( ref_runs == 0 || ref_ok > 0 )) || { log "iperf3/sockperf failed on every run"; return 2; }
    (( lg_runs == 0 || lg_ok > 0 )) || { log "loadgen failed on every run"; return 3; }
    return 0
}
