# bench/raw.sh - the raw section: `loadgen net --engine packet` and `--engine xdp` vs trafgen on veth pairs.
# Sourced by bench.sh, which sets the settings and runs it under `set -euo pipefail`.
# It uses the net section's veth helpers (bench/net.sh): veth_up, veth_down, veth_measure,
# run_trafgen_veth, run_loadgen_target, serve_veth, wait_listen.

# ------------------------------------------------------------- raw section --

# Root only: two namespaces this script creates, joined by a veth pair (10.79.x.1/.2 on a
# /30 inside them only), deleted again after each case. name:kind:queues:rate_pps
#   veth        1-queue veth: trafgen --cpus 1 vs the packet and xdp engines at --pps max
#   scale       2-queue veth: trafgen --cpus 1 and 2, the packet and xdp engines with 1 and 2 senders,
#               in RAW_PAIRS interleaved rounds (each round's 2-sender run over its own 1-sender one)
#   wire        2-queue veth, the scale case's runs with no receiving work: every tool's frames go
#               to a MAC no host has (WIRE_MAC, a static neighbour entry in the tx namespace and
#               trafgen's destination), so the receiving veth counts them (rx_packets) and its stack
#               drops them at its first check (ip_rcv: not for this host). On veth the receiving
#               stack runs on the sender's CPU, and on 2 CPUs any receiver shares the senders' CPUs:
#               this is what the senders put on the wire, as on a NIC whose receiver is another host.
#               Then the xdp engine paced at WIRE_RATE (1M) with 2 senders: requested vs sent, lag.
#   paced-100k  1-queue veth: the packet and xdp engines at 100k pps, requested vs achieved, loss
# Except in the wire case, every tool's frames meet loadgen's socket receivers (trafgen's a
# `loadgen serve` on their port) and are measured by the receiving veth's rx_packets delta over the run; loadgen's
# engines also by loadgen's own receiver (an agent in the receiving namespace: a paired run,
# which counts every frame and the loss exactly), in the veth case also by its packet
# receivers (--rx-engine packet). On veth the xdp engine runs in copy mode
# (veth has no zero-copy AF_XDP) and needs nothing loaded on either end: TX needs no XDP program.
#
# The veth case runs RAW_PAIRS interleaved rounds (trafgen, packet, xdp; the order reversed in
# even rounds) and the render takes each tool's median: runs here vary by a third from one to
# the next. Each round gives the tools the same places: the sender on the first CPU (trafgen
# --cpus 1, loadgen --workers 1), one receiver pinned to the last (RX_PIN), so neither tool's
# receiver shares the sender's CPU by the luck of a flow hash; that receiver spins (--busy-poll)
# so that waking it costs the sender nothing. The sending tool's whole
# process tree's CPU is sampled after warm-up (bench/proc.py), for CPU per received packet.
RAW_CASES=(
    "veth:veth:1:"
    "scale:scale:2:"
    "wire:wire:2:"
    "paced-100k:paced:1:100000"
)
RAW_AGENT_PORT=7070
RAW_PAIRS=${BENCH_RAW_PAIRS:-3}
WIRE_MAC=02:6c:67:00:00:01   # locally administered, unicast: no interface here has it
WIRE_RATE=1000000            # the wire case's paced run (pps)

# run_loadgen_raw OUT.json ARGS...: an agent in the rx namespace, `loadgen net --peer
# ARGS...` (ARGS name the engine) in the tx one, bracketed by the veth counters.
run_loadgen_raw() {
    local out=$1 base=${1%.json} srv rc=0; shift
    local token=$RESULTS_DIR/raw.token
    if [[ ! -s $token ]]; then
        ( umask 077; python3 -c 'import secrets; print(secrets.token_hex(16))' > "$token" )
        at_exit "rm -f '$token'"   # a secret: not left in the results directory
    fi
    local scmd=(ip netns exec "$VETH_RX" "${RX_PIN[@]}" "${LOADGEN[@]}" serve --listen "$VETH_RX_IP:$RAW_AGENT_PORT"
        --token-file "$token")
    local cmd=(ip netns exec "$VETH_TX" "${LOADGEN[@]}" net --peer "$VETH_RX_IP:$RAW_AGENT_PORT"
        --token-file "$token" --size "$NET_SIZE" --duration "${DURATION}s" "$@"
        --json "$out" --quiet)
    printf '%s\n' "${scmd[*]} &" "${cmd[*]}" > "$base.cmd"
    bg_start "$LIMIT_SERVER" "$base.server.txt" "$base.server.err" "${scmd[@]}"
    srv=$BG_PID
    if ! wait_listen tcp "$RAW_AGENT_PORT" "$srv" "$VETH_RX"; then
        bg_stop "$srv" || true
        echo "loadgen agent did not start listening on $VETH_RX_IP:$RAW_AGENT_PORT" > "$base.err"
        return 1
    fi
    veth_measure "$base.counters.json" run_bounded "$LIMIT_CLIENT" "$base.out" "$base.err" "${cmd[@]}" || rc=$?
    bg_stop "$srv" TERM 1 || true
    return "$rc"
}

# run_trafgen_raw OUT.txt CPUS RECEIVERS: trafgen as run_trafgen_veth runs it, with `loadgen serve`
# (RECEIVERS socket receivers) bound to the port its frames go to, as loadgen's own runs have
# their agent's receivers there. On veth the receiving stack runs on the sender's CPU, so a
# frame that meets a socket costs the sender more than one dropped for want of one: without
# this, trafgen's frames were dropped and loadgen's were received, which favoured trafgen.
run_trafgen_raw() {
    local out=$1 base=${1%.txt} cpus=$2 receivers=$3 rc=0
    serve_veth "$base" "$receivers" || return 1
    run_trafgen_veth "$out" "$cpus" || rc=$?
    printf '%s\n' "${SERVE_CMD[*]} &" >> "$base.cmd"
    bg_stop "$SERVE_PID" INT 5 || true
    return "$rc"
}

# raw_ip_in: the receiving namespace's IP InReceives (/proc/net/snmp). A frame for another
# host is dropped before IP counts it, so across the wire case it should stay still.
raw_ip_in() {
    ip netns exec "$VETH_RX" awk '/^Ip:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "InReceives") c = i; h = 1 }
        else print $c }' /proc/net/snmp
}

# Where the veth case's TX queues' interrupts are: veth has none (it delivers in the
# sender's own context), which the table's note says; a real NIC's would be listed.
raw_queue_facts() {
    local n
    n=$(ip netns exec "$VETH_TX" sh -c "ls -d /sys/class/net/$VETH_TX/queues/tx-* | wc -l")
    printf '%s TX queues on %s (veth: no IRQs)' "$n" "$VETH_TX"
}

bench_raw() {
    # Skipped, not failed, so `all` goes on as a user: like the net section's veth case.
    [[ $EUID -eq 0 ]] || { log "raw: skipped: needs root (network namespaces, veth, packet sockets)"; return 0; }
    command -v ip >/dev/null 2>&1 || { log "raw: skipped: no ip(8)"; return 0; }
    if want_tool trafgen && ! PATH=$PATH:/usr/sbin command -v trafgen >/dev/null 2>&1; then
        log "trafgen not found, installing netsniff-ng"
        { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y netsniff-ng; } >&2 \
            || log "warning: could not install netsniff-ng"
    fi
    start_results
    find_loadgen
    at_exit net_stop_all
    LIMIT_CLIENT=$(( DURATION + RAMP + 30 )) LIMIT_SERVER=$(( DURATION + RAMP + 60 ))
    local lg_state=ok
    if ! want_tool loadgen; then lg_state=skipped
    elif [[ ${#LOADGEN[@]} -eq 0 ]]; then lg_state=unavailable; fi

    print_machine
    printf '  %-12s %s\n' \
        netsniff-ng "$(PATH=$PATH:/usr/sbin tool_version netsniff-ng --version) (trafgen)" \
        loadgen     "$(loadgen_version) [${LOADGEN[*]:-loadgen: not available}]" \
        target      "${NET_SIZE}-byte UDP payloads across a veth pair between two namespaces (mtu 1500)" \
        duration    "${DURATION}s per run (--pps max runs: no ramp, so rx_packets / duration is the rate; paced: + ${RAMP}s ramp)" \
        load        "$(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min load average before the runs)"
    echo

    local manifest=$RESULTS_DIR/raw.manifest.tsv spec name kind queues rate
    local ref_ok=0 ref_runs=0 lg_ok=0 lg_runs=0
    : > "$manifest"

    # raw_run CASE KIND TOOL LABEL RATE SENDERS OUT RUNNER ARGS...: one row of the manifest;
    # PAIR (the veth case's round) and CPU_OUT (the sample's file), when set, go in it too
    local PAIR=""
    raw_run() {
        local name=$1 kind=$2 tool=$3 label=$4 rate=$5 senders=$6 out=$7 st=skipped rc; shift 7
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
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$kind" "$tool" "$label" "$st" "$out" "$rate" \
            "$senders" "$PAIR" "$CPU_OUT" >> "$manifest"
    }
    # raw_veth_round P: round P of the veth case, its tools in turn
    raw_veth_round() {
        local p=$RESULTS_DIR/raw-veth.$1 tool order=(trafgen packet xdp)
        (( $1 % 2 )) || order=(xdp packet trafgen)
        PAIR=$1
        for tool in "${order[@]}"; do
            CPU_OUT=$p.$tool.cpu.json
            case $tool in
            trafgen) raw_run veth veth trafgen "trafgen --cpus 1" "" 1 "$p.trafgen.txt" \
                         run_trafgen_raw "$p.trafgen.txt" 1 1 ;;
            *)       raw_run veth veth loadgen "loadgen --engine $tool --pps max" "" 1 "$p.$tool.json" \
                         run_loadgen_raw "$p.$tool.json" --engine "$tool" --pps max --ramp 0s --workers 1 \
                         --receivers 1 "${RX_FLAGS[@]}" ;;
            esac
        done
        PAIR="" CPU_OUT=""
    }

    # raw_senders_round CASE P: round P of the scale or wire case: each tool with 1 sender, then
    # 2, the tools' order reversed in even rounds. scale: the frames meet receivers (as many as
    # senders: trafgen's a `loadgen serve`, loadgen's its agent); wire: nobody's do.
    raw_senders_round() {
        local c=$1 p=$RESULTS_DIR/raw-$1.$2 tool n order=(trafgen packet xdp)
        local tg_run=run_trafgen_raw lg_run=run_loadgen_raw
        [[ $c == wire ]] && tg_run=run_trafgen_veth lg_run=run_loadgen_target
        (( $2 % 2 )) || order=(xdp packet trafgen)
        PAIR=$2
        for tool in "${order[@]}"; do
            for n in 1 2; do
                case $tool in
                trafgen) raw_run "$c" "$c" trafgen "trafgen --cpus $n" "" "$n" "$p.trafgen-$n.txt" \
                             "$tg_run" "$p.trafgen-$n.txt" "$n" "$n" ;;
                *)       raw_run "$c" "$c" loadgen "loadgen --engine $tool --workers $n" "" "$n" \
                             "$p.$tool-$n.json" "$lg_run" "$p.$tool-$n.json" --engine "$tool" --pps max \
                             --ramp 0s --workers "$n" ;;   # xdp: sender i bound to tx-i
                esac
            done
        done
        PAIR=""
    }

    for spec in "${RAW_CASES[@]}"; do
        IFS=: read -r name kind queues rate <<<"$spec"
        want_case "$name" || continue
        local p=$RESULTS_DIR/raw-$name
        veth_up "$queues" || { log "[$name] skipped: could not create the namespaces/veth pair"; veth_down; continue; }
        log "[$name] $(raw_queue_facts)"
        case $kind in
        veth)
            local cpus last round
            cpus=$(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)))')
            last=${cpus##* }
            # one receiver on the last CPU, the sender on the first; on one CPU they share it.
            # There it spins (--busy-poll, trafgen's serve and loadgen's agent alike): veth delivers
            # in the sender's context, so a sleeping receiver's wake-ups cost the sender's CPU
            # (a fifth of it in a perf profile here), which a NIC's receiver on another host never would.
            if [[ $cpus != "$last" ]]; then RX_PIN=(taskset -c "$last") RX_FLAGS=(--busy-poll); fi
            CPU_AFTER_S=1
            CPU_WINDOW_S=$(awk -v d="$DURATION" 'BEGIN { w = d - 1.5; print (w < 0.5 ? 0.5 : w) }')
            for (( round = 1; round <= RAW_PAIRS; round++ )); do
                raw_veth_round "$round"
            done
            # The same, received by the agent's packet receivers (AF_PACKET rings): their count
            # beside rx_packets says how much of what the veth delivered they took.
            raw_run "$name" "$kind" loadgen "loadgen --engine packet --rx-engine packet --pps max" "" 1 \
                "$p.loadgen-rxpacket.json" run_loadgen_raw "$p.loadgen-rxpacket.json" --engine packet --pps max --ramp 0s \
                --workers 1 --receivers 1 --rx-engine packet
            RX_PIN=() RX_FLAGS=() ;;
        scale)
            local round
            for (( round = 1; round <= RAW_PAIRS; round++ )); do
                raw_senders_round scale "$round"
            done
            # Without --workers: a sender per TX queue, as many as the CPUs allow (loadgen/net/queues.py).
            raw_run "$name" "$kind" loadgen "loadgen --engine packet (a sender per queue)" "" auto \
                "$p.loadgen-auto.json" run_loadgen_raw "$p.loadgen-auto.json" --engine packet --pps max --ramp 0s ;;
        wire)
            local round
            ip -n "$VETH_TX" neigh replace "$VETH_RX_IP" lladdr "$WIRE_MAC" dev "$VETH_TX" nud permanent || {
                log "[$name] skipped: could not add the neighbour entry"; veth_down; continue; }
            VETH_DA=$WIRE_MAC
            raw_ip_in > "$p.ip-in.start"
            for (( round = 1; round <= RAW_PAIRS; round++ )); do
                raw_senders_round wire "$round"
            done
            # 1M pps, reachable here only with both CPUs and the xdp engine
            raw_run "$name" paced loadgen "loadgen --engine xdp --workers 2 --pps $WIRE_RATE (wire)" "$WIRE_RATE" 2 \
                "$p.xdp-paced.json" run_loadgen_target "$p.xdp-paced.json" --engine xdp --workers 2 --pps "$WIRE_RATE" \
                --ramp "${RAMP}s"
            VETH_DA=""
            raw_ip_in > "$p.ip-in.end" ;;
        paced)
            raw_run "$name" "$kind" loadgen "loadgen --engine packet --pps $rate" "$rate" 1 "$p.loadgen.json" \
                run_loadgen_raw "$p.loadgen.json" --engine packet --pps "$rate" --ramp "${RAMP}s"
            raw_run "$name" "$kind" loadgen "loadgen --engine xdp --pps $rate" "$rate" 1 "$p.xdp.json" \
                run_loadgen_raw "$p.xdp.json" --engine xdp --pps "$rate" --ramp "${RAMP}s" ;;
        esac
        veth_down
    done

    render raw "$manifest" | tee "$RESULTS_DIR/raw.summary.txt"
    echo
    echo "raw results: $RESULTS_DIR"

    # Not an assertion on performance: only "the tool could not run at all".
    (( ref_runs == 0 || ref_ok > 0 )) || { log "trafgen failed on every run"; return 2; }
    (( lg_runs == 0 || lg_ok > 0 )) || { log "loadgen failed on every run"; return 3; }
    return 0
}
