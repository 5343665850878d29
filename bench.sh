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
#   ./bench.sh disk     fio vs `loadgen disk` (io_uring, 4k random I/O)
#   ./bench.sh net      iperf3 and sockperf vs `loadgen net` (UDP, 127.0.0.1 only):
#                       64-byte blast, round-trip latency at 100k pps, loadgen
#                       rate accuracy at 10k/100k/300k pps; as root also trafgen
#                       vs loadgen across a veth pair between two namespaces
#   ./bench.sh pacing   what pacing costs: loadgen beside iperf3 -u (10k, 100k pps), fio
#                       --rate_iops (50k, 200k IOPS) and sockperf under-load (echo, 10k
#                       pps), with the CPU of each tool's whole process tree
#   ./bench.sh all      every implemented section
#
# The tables come from bench/render.py and can be printed again from a stored results
# directory without re-running: python3 -m bench.render dir bench-results/<timestamp>
#
# Environment (all optional):
#   BENCH_DURATION=10        measured seconds per run (each tool, each case)
#   BENCH_RAMP=1             warm-up seconds per run (not measured)
#   BENCH_RESULTS_DIR=...    where raw JSON goes (default bench-results/<timestamp>
#                            next to this script)
#   BENCH_TOOLS="fio iperf3 sockperf trafgen loadgen"  run only some tools (e.g. BENCH_TOOLS=fio)
#   BENCH_CASES=...          comma-separated subset of case names (see DISK_CASES,
#                            NET_CASES, PACING_CASES)
#   BENCH_ZRAM_SIZE=2G       size of the zram device (root only)
#   BENCH_FILE_SIZE=1G       size of the fallback file target (no root / no zram)
#   BENCH_TARGET=...         use this existing file or block device instead of
#                            zram/tempfile. It is overwritten (fill + randwrite)!
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

# ----------------------------------------------------------------- helpers --

log()  { printf '%s\n' "$*" >&2; }
die()  { log "bench.sh: $*"; exit 1; }
want_tool() { [[ " $TOOLS " == *" $1 "* ]]; }
want_case() { [[ -z ${BENCH_CASES:-} || ",$BENCH_CASES," == *",$1,"* ]]; }

# Cleanup actions run in reverse order of registration at exit.
CLEANUP=()
at_exit() { CLEANUP+=("$1"); }
run_cleanup() {
    local i
    for (( i=${#CLEANUP[@]}-1; i>=0; i-- )); do
        eval "${CLEANUP[i]}" || log "cleanup failed: ${CLEANUP[i]}"
    done
    CLEANUP=()
}

# Sets LOADGEN to the loadgen command, or to () if it cannot run yet. From a
# checkout (loadgen/ beside this script) it runs that tree through PYTHONPATH,
# never a `loadgen` on PATH, which may be another tree's editable install.
LOADGEN=()
find_loadgen() {
    if [[ -f $SCRIPT_DIR/loadgen/__main__.py ]]; then
        if python3 -m loadgen --help >/dev/null 2>&1; then LOADGEN=(python3 -m loadgen)
        else LOADGEN=(); fi
    elif command -v loadgen >/dev/null 2>&1 && loadgen --help >/dev/null 2>&1; then
        LOADGEN=(loadgen)
    elif python3 -m loadgen --help >/dev/null 2>&1; then
        LOADGEN=(python3 -m loadgen)
    else
        LOADGEN=()
    fi
}

print_machine() {
    local cpu virt
    cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
    [[ -n $cpu ]] || cpu=$(lscpu 2>/dev/null | awk -F': *' '/^Model name/ {print $2; exit}' || true)
    virt=""
    if command -v systemd-detect-virt >/dev/null 2>&1; then
        virt=$(systemd-detect-virt 2>/dev/null || true)
    fi
    if [[ -z $virt || $virt == none ]] && [[ -r /sys/class/dmi/id/sys_vendor ]]; then
        virt="${virt:+$virt, }dmi: $(cat /sys/class/dmi/id/sys_vendor)"
    fi
    if grep -qw hypervisor /proc/cpuinfo 2>/dev/null; then
        virt="${virt:+$virt, }cpu hypervisor flag set"
    fi
    echo "== machine"
    printf '  %-12s %s\n' \
        kernel      "$(uname -r)" \
        cpu         "${cpu:-unknown} x $(nproc)" \
        memory      "$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)" \
        clocksource "$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown)" \
        hypervisor  "${virt:-unknown}"
    # loadgen's own view (CPUID signature, NIC drivers, disks), as results record it.
    if [[ ${#LOADGEN[@]} -gt 0 ]] && "${LOADGEN[@]}" sysinfo >/dev/null 2>&1; then
        "${LOADGEN[@]}" sysinfo 2>/dev/null | sed 's/^/  | /'
    fi
}

# Creates RESULTS_DIR and records what its tables need besides the tools' outputs, so
# `python3 -m bench.render dir RESULTS_DIR` can print them again later.
start_results() {
    mkdir -p "$RESULTS_DIR"
    printf '{"duration_s": "%s", "ramp_s": "%s"}\n' "$DURATION" "$RAMP" > "$RESULTS_DIR/meta.json"
}

loadgen_version() {
    python3 -c 'import loadgen, os; print(loadgen.__version__, "from", os.path.dirname(loadgen.__file__))' 2>/dev/null \
        || echo "unknown (import failed)"
}

# ------------------------------------------------------------ disk section --

# name:rw:qd:workers:rate_iops (empty rate = unlimited)
DISK_CASES=(
    "randread-qd1:randread:1:1:"
    "randread-qd32:randread:32:1:"
    "randread-qd32-2w:randread:32:2:"
    "randwrite-qd32:randwrite:32:1:"
    "randread-50k:randread:32:1:50000"
    "randread-2k:randread:4:1:2000"
)

ensure_fio() {
    command -v fio >/dev/null 2>&1 && return 0
    [[ $EUID -eq 0 ]] || die "fio is not installed and we are not root to install it"
    log "fio not found, installing it"
    apt-get update && apt-get install -y fio || die "could not install fio"
    command -v fio >/dev/null 2>&1 || die "fio still not available"
}

# Sets TARGET, TARGET_SIZE, TARGET_KIND (zram|file|custom).
TARGET="" TARGET_SIZE="" TARGET_KIND=""

zram_reset() {  # zram_reset N: reset, retrying while a killed fio lets go
    local n=$1 i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        echo 1 > "/sys/block/zram$n/reset" 2>/dev/null && return 0
        sleep 0.5
    done
    log "warning: could not reset /dev/zram$n"; return 1
}

setup_zram() {
    local n="" created_node=""
    [[ -e /sys/block/zram0 ]] || modprobe zram 2>/dev/null || true
    if [[ -r /sys/block/zram0/disksize && $(cat /sys/block/zram0/disksize) == 0 ]]; then
        n=0
    elif [[ -w /sys/class/zram-control/hot_add ]]; then
        n=$(cat /sys/class/zram-control/hot_add 2>/dev/null) || n=""
        [[ -n $n ]] && at_exit "echo $n > /sys/class/zram-control/hot_remove"
    fi
    [[ -n $n ]] || return 1
    # Containers often lack udev: create the node from sysfs if needed.
    if [[ ! -b /dev/zram$n ]]; then
        local majmin; majmin=$(cat "/sys/block/zram$n/dev") || return 1
        mknod "/dev/zram$n" b "${majmin%%:*}" "${majmin##*:}" || return 1
        created_node=/dev/zram$n
    fi
    if ! echo "$ZRAM_SIZE" > "/sys/block/zram$n/disksize"; then
        [[ -n $created_node ]] && rm -f "$created_node"
        return 1
    fi
    at_exit "zram_reset $n"
    [[ -n $created_node ]] && at_exit "rm -f $created_node"
    TARGET=/dev/zram$n
    TARGET_SIZE=$(cat "/sys/block/zram$n/disksize")
    TARGET_KIND=zram
}

setup_file() {
    local dir
    dir=$(mktemp -d "$PWD/.bench-tmp.XXXXXX")
    at_exit "rm -rf '$dir'"
    TARGET=$dir/target
    TARGET_SIZE=$(numfmt --from=iec "$FILE_SIZE")
    TARGET_KIND=file
}

setup_target() {
    if [[ -n ${BENCH_TARGET:-} ]]; then
        TARGET=$BENCH_TARGET; TARGET_KIND=custom
        if [[ -b $TARGET ]]; then TARGET_SIZE=$(blockdev --getsize64 "$TARGET")
        else TARGET_SIZE=$(stat -c %s "$TARGET"); fi
    elif [[ $EUID -eq 0 ]] && setup_zram; then
        :
    else
        [[ $EUID -eq 0 ]] && log "zram unavailable, falling back to a file"
        setup_file
    fi
    # Fill once so random reads hit real data (zram serves never-written or
    # same-filled pages without any work; a fresh file may be sparse).
    log "filling $TARGET ($TARGET_SIZE bytes) once ..."
    fio --name=fill --filename="$TARGET" --rw=write --bs=1M --direct=1 \
        --ioengine=io_uring --iodepth=8 --size="$TARGET_SIZE" \
        --output="$RESULTS_DIR/fill.fio.json" --output-format=json \
        >/dev/null 2>"$RESULTS_DIR/fill.fio.err" \
        || die "filling $TARGET failed: $(cat "$RESULTS_DIR/fill.fio.err")"
}

# run_tool OUT ERR CMD...: CMD in the foreground; under the pacing section (CPU_OUT set),
# bounded like the net section's runs and with its process tree's CPU sampled.
run_tool() {
    local out=$1 err=$2; shift 2
    if [[ -n $CPU_OUT ]]; then run_bounded "$LIMIT_CLIENT" "$out" "$err" "$@"
    else "$@" >"$out" 2>"$err"; fi
}

# run_fio OUT rw qd jobs rate -> 0 on success
run_fio() {
    local out=$1 rw=$2 qd=$3 jobs=$4 rate=$5
    local batch=$(( qd < 32 ? qd : 32 ))
    local cmd=(fio --name=bench --filename="$TARGET" --size="$TARGET_SIZE"
        --rw="$rw" --bs=4k --iodepth="$qd" --numjobs="$jobs" --thread --group_reporting
        --ioengine=io_uring --fixedbufs --registerfiles --hipri=0 --direct=1
        --iodepth_batch_submit="$batch" --iodepth_batch_complete_min=1
        --iodepth_batch_complete_max="$batch"
        --time_based --runtime="$DURATION" --ramp_time="$RAMP"
        --norandommap --randrepeat=0 --lat_percentiles=1
        --output-format=json --output="$out")
    [[ -n $rate ]] && cmd+=(--rate_iops="$rate")   # per job; rate cases use 1 job
    echo "${cmd[*]}" > "${out%.json}.cmd"
    run_tool /dev/null "${out%.json}.err" "${cmd[@]}"
}

# run_loadgen OUT rw qd workers rate -> 0 on success
run_loadgen() {
    local out=$1 rw=$2 qd=$3 workers=$4 rate=$5
    # --size: loadgen caps the span it touches (default 1g); use the whole
    # target like fio does.
    local cmd=("${LOADGEN[@]}" disk --target "$TARGET" --size "$TARGET_SIZE" --rw "$rw" --bs 4k
        --qd "$qd" --workers "$workers" --duration "${DURATION}s" --ramp "${RAMP}s"
        --iops "${rate:-max}" --json "$out" --quiet)
    [[ $rw == *write* && -b $TARGET ]] && cmd+=(--allow-destroy)
    echo "${cmd[*]}" > "${out%.json}.cmd"
    run_tool "${out%.json}.out" "${out%.json}.err" "${cmd[@]}"
}

bench_disk() {
    ensure_fio
    start_results
    find_loadgen
    local lg_state=ok
    if ! want_tool loadgen; then lg_state=skipped
    elif [[ ${#LOADGEN[@]} -eq 0 ]]; then lg_state=unavailable; fi

    print_machine
    setup_target
    printf '  %-12s %s\n' \
        fio       "$(fio --version)" \
        loadgen   "$(loadgen_version) [${LOADGEN[*]:-loadgen: not available}]" \
        target    "$TARGET ($TARGET_KIND, $(numfmt --to=iec "$TARGET_SIZE"))" \
        duration  "${DURATION}s + ${RAMP}s ramp per run"
    echo

    local manifest=$RESULTS_DIR/disk.manifest.tsv spec name rw qd workers rate
    local fio_ok=0 fio_runs=0 lg_ok=0 lg_runs=0 st
    : > "$manifest"
    for spec in "${DISK_CASES[@]}"; do
        IFS=: read -r name rw qd workers rate <<<"$spec"
        want_case "$name" || continue
        local fjson=$RESULTS_DIR/disk-$name.fio.json ljson=$RESULTS_DIR/disk-$name.loadgen.json
        local fst=skipped lst=$lg_state
        if want_tool fio; then
            log "[$name] fio ..."
            fio_runs=$((fio_runs + 1))
            if run_fio "$fjson" "$rw" "$qd" "$workers" "$rate"; then fst=ok; fio_ok=$((fio_ok + 1))
            else st=$?; fst="failed(rc=$st)"; log "  fio failed, see ${fjson%.json}.err"; fi
        fi
        if [[ $lg_state == ok ]]; then
            log "[$name] loadgen ..."
            lg_runs=$((lg_runs + 1))
            if run_loadgen "$ljson" "$rw" "$qd" "$workers" "$rate"; then lst=ok; lg_ok=$((lg_ok + 1))
            else st=$?; lst="failed(rc=$st)"; log "  loadgen failed, see ${ljson%.json}.err"; fi
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
            "$name" "$rw" "$qd" "$workers" "$rate" "$fst" "$fjson" "$lst" "$ljson" >> "$manifest"
    done

    render disk "$manifest" | tee "$RESULTS_DIR/disk.summary.txt"
    echo
    echo "raw results: $RESULTS_DIR"

    # Not an assertion on performance: only "the tool could not run at all".
    (( fio_runs == 0 || fio_ok > 0 )) || { log "fio failed on every case"; return 2; }
    (( lg_runs == 0 || lg_ok > 0 )) || { log "loadgen failed on every case"; return 3; }
    return 0
}

# Prints the section's tables from its manifest (bench/render.py; also re-renders a
# stored results directory: python3 -m bench.render dir DIR).
render() {  # render SECTION MANIFEST
    python3 -m bench.render "$1" "$2" --duration "$DURATION"
}

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

tool_version() {  # tool_version CMD...: first line of its version output
    local v
    v=$("$@" 2>&1 | head -n 1) || true
    echo "${v:-not available}"
}

# Background processes of this section, by the pid of their `timeout` wrapper:
# timeout bounds each one even if this script is SIGKILLed, passes on the
# signal it gets, and follows up with SIGKILL 3 s later.
NET_PIDS=() BG_PID=""

bg_start() {  # bg_start LIMIT OUT ERR CMD...: sets BG_PID
    local limit=$1 out=$2 err=$3; shift 3
    timeout -k 3 "$limit" "$@" >"$out" 2>"$err" &
    BG_PID=$!
    NET_PIDS+=("$BG_PID")
}

# True while PID is a live (not zombie) child of this shell: a reaped pid
# may be reused by an unrelated process, which must never be signalled.
bg_running() {
    local st ppid
    { read -r _ _ st ppid _ < "/proc/$1/stat"; } 2>/dev/null || return 1
    [[ $st != Z && $ppid == "$BASHPID" ]]
}

bg_forget() {
    local p keep=()
    for p in "${NET_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    NET_PIDS=("${keep[@]}")
}

bg_stop() {  # bg_stop PID [SIG] [GRACE_S]: let it end by itself, then signal; reap
    local pid=$1 sig=${2:-TERM} grace=${3:-0} i rc=0
    for (( i = 0; i < grace * 10; i++ )); do bg_running "$pid" || break; sleep 0.1; done
    bg_running "$pid" && kill -s "$sig" "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || rc=$?
    bg_forget "$pid"
    return "$rc"
}

net_stop_all() {
    local pid
    for pid in "${NET_PIDS[@]}"; do bg_stop "$pid" TERM || true; done
    NET_PIDS=()
}

# True when the main script is gone (e.g. only its pid got SIGTERM) and this
# section's subshell was left behind: stop rather than run on unattended.
net_orphaned() {
    local ppid
    [[ $BASHPID != "$$" ]] || return 1
    { read -r _ _ _ ppid _ < "/proc/$BASHPID/stat"; } 2>/dev/null || return 1
    [[ $ppid != "$$" ]]
}

# CPU sampling (pacing section): when CPU_OUT is set, run_bounded samples the CPU time
# of CMD's process tree plus CPU_ROOTS' (a server it talks to) into CPU_OUT, from
# CPU_AFTER_S after CMD started for CPU_WINDOW_S (bench/proc.py says how).
CPU_OUT="" CPU_ROOTS=() CPU_AFTER_S=0 CPU_WINDOW_S=0

# run_bounded LIMIT OUT ERR CMD...: like a foreground command, but signals
# trapped by the section (INT, TERM) act within 0.2 s instead of at its end.
run_bounded() {
    local rc=0 tool sampler="" started=$EPOCHREALTIME
    bg_start "$@"
    tool=$BG_PID
    if [[ -n $CPU_OUT ]]; then
        bg_start "$LIMIT_CLIENT" /dev/null "${CPU_OUT%.json}.err" python3 -m bench.proc --since "$started" \
            --after "$CPU_AFTER_S" --window "$CPU_WINDOW_S" --out "$CPU_OUT" "${CPU_ROOTS[@]}" "$tool"
        sampler=$BG_PID
    fi
    while bg_running "$tool"; do
        net_orphaned && { log "bench.sh: main script gone, stopping"; exit 143; }
        sleep 0.2
    done
    wait "$tool" || rc=$?
    bg_forget "$tool"
    if [[ -n $sampler ]]; then bg_stop "$sampler" TERM 5 || true; fi
    return "$rc"
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

LIMIT_CLIENT=0 LIMIT_SERVER=0   # seconds, set in bench_net

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

veth_up() {
    at_exit veth_down
    VETH_UP=1
    ip netns add "$VETH_TX" && ip netns add "$VETH_RX" &&
    ip link add "$VETH_TX" netns "$VETH_TX" type veth peer name "$VETH_RX" netns "$VETH_RX" &&
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

# run_trafgen_veth OUT.txt: trafgen in the tx namespace for DURATION s, one
# Ethernet/IPv4/UDP frame with a NET_SIZE-byte payload to the rx veth's MAC.
run_trafgen_veth() {
    local out=$1 base=${1%.txt} trafgen rx_mac tx_mac rc=0
    trafgen=$(PATH=$PATH:/usr/sbin command -v trafgen) || { echo "trafgen not found" > "$base.err"; return 1; }
    rx_mac=$(ip -n "$VETH_RX" link show "$VETH_RX" | awk '/link\/ether/ {print $2}')
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
        "$trafgen" --dev "$VETH_TX" --conf "$base.cfg" --cpus 1 --no-sock-mem --notouch-irq)
    echo "${cmd[*]}" > "$base.cmd"
    veth_measure "$base.counters.json" run_bounded "$LIMIT_CLIENT" "$out" "$base.err" "${cmd[@]}" || rc=$?
    (( rc == 124 )) && rc=0   # timeout ended it, as planned
    return "$rc"
}

# run_loadgen_veth OUT.json: `loadgen serve` in the rx namespace, `loadgen net` in the tx one.
run_loadgen_veth() {
    local out=$1 base=${1%.json} srv rc=0
    local scmd=(ip netns exec "$VETH_RX" "${LOADGEN[@]}" serve --port "$VETH_PORT" --host "$VETH_RX_IP"
        --duration "$(( DURATION + 3 ))s" --workers 1)
    local cmd=(ip netns exec "$VETH_TX" "${LOADGEN[@]}" net --target "$VETH_RX_IP:$VETH_PORT" --pps max
        --size "$NET_SIZE" --duration "${DURATION}s" --ramp 0s --json "$out" --quiet)
    printf '%s\n' "${scmd[*]} &" "${cmd[*]}" > "$base.cmd"
    bg_start "$LIMIT_SERVER" "$base.server.txt" "$base.server.err" "${scmd[@]}"
    srv=$BG_PID
    if ! wait_listen udp "$VETH_PORT" "$srv" "$VETH_RX"; then
        bg_stop "$srv" || true
        echo "loadgen serve did not start listening on $VETH_RX_IP:$VETH_PORT" > "$base.err"
        return 1
    fi
    veth_measure "$base.counters.json" run_bounded "$LIMIT_CLIENT" "$base.out" "$base.err" "${cmd[@]}" || rc=$?
    bg_stop "$srv" INT 5 || true
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

# ----------------------------------------------------------- pacing section --

# What pacing costs: loadgen beside a peer at the same fixed rate, back to back, with
# the CPU of each tool's whole process tree (bench/proc.py) sampled while it runs.
#   net   iperf3 -u -b RATE*64*8 (client + server) vs loadgen net --pps RATE (embedded
#         receiver), 64-byte payloads on 127.0.0.1: cores, loss, loadgen's schedule lag
#   disk  fio --rate_iops vs loadgen disk --iops, 4k randread, qd 32, 1 job / 1 worker,
#         io_uring, on the disk section's target (zram as root): cores, p99s
#   echo  sockperf under-load --reply-every 1 --full-rtt vs loadgen net --mode echo
# name:kind:rate
PACING_CASES=(
    "net-10k:net:10000"
    "net-100k:net:100000"
    "disk-50k:disk:50000"
    "disk-200k:disk:200000"
    "echo-10k:echo:10000"
)

bench_pacing() {
    local want_disk=0 want_net=0 spec name kind rate
    for spec in "${PACING_CASES[@]}"; do
        IFS=: read -r name kind rate <<<"$spec"
        want_case "$name" || continue
        if [[ $kind == disk ]]; then want_disk=1; else want_net=1; fi
    done
    (( want_disk )) && ensure_fio
    (( want_net )) && ensure_net_tools
    start_results
    find_loadgen
    at_exit net_stop_all
    LIMIT_CLIENT=$(( DURATION + RAMP + 30 )) LIMIT_SERVER=$(( DURATION + RAMP + 60 ))
    # Every tool runs RAMP + DURATION seconds (iperf3 and sockperf with -t DURATION+RAMP,
    # so their figures include the ramp; loadgen and fio ramp by themselves); CPU is
    # sampled from 1 s after the ramp (start-up done) until 0.5 s before the end.
    PEER_EXTRA_S=$RAMP
    CPU_AFTER_S=$(( RAMP + 1 ))
    CPU_WINDOW_S=$(awk -v d="$DURATION" 'BEGIN { w = d - 1.5; print (w < 0.5 ? 0.5 : w) }')
    local lg_state=ok
    if ! want_tool loadgen; then lg_state=skipped
    elif [[ ${#LOADGEN[@]} -eq 0 ]]; then lg_state=unavailable; fi

    print_machine
    (( want_disk )) && setup_target
    printf '  %-12s %s\n' \
        fio         "$(tool_version fio --version)" \
        iperf3      "$(tool_version iperf3 --version)" \
        sockperf    "$(tool_version sockperf --version)" \
        loadgen     "$(loadgen_version) [${LOADGEN[*]:-loadgen: not available}]" \
        target      "net: UDP on 127.0.0.1, ${NET_SIZE}-byte payloads; disk: ${TARGET:-none} (${TARGET_KIND:-not used})" \
        duration    "${DURATION}s + ${RAMP}s ramp per run; CPU sampled over ${CPU_WINDOW_S}s from ${CPU_AFTER_S}s after start" \
        load        "$(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min load average before the runs)"
    echo

    local manifest=$RESULTS_DIR/pacing.manifest.tsv
    local ref_ok=0 ref_runs=0 lg_ok=0 lg_runs=0
    : > "$manifest"

    # pacing_run CASE KIND TOOL LABEL RATE OUT RUNNER ARGS...: one measured row of the manifest
    pacing_run() {
        local name=$1 kind=$2 tool=$3 label=$4 rate=$5 out=$6 st=skipped rc cpu=""; shift 6
        [[ $tool == loadgen ]] && st=$lg_state
        if [[ $tool == loadgen && $st == ok ]] || { [[ $tool != loadgen ]] && want_tool "$tool"; }; then
            log "[$name] $label ..."
            cpu=${out%.*}.cpu.json
            rm -f "$cpu"
            if [[ $tool == loadgen ]]; then lg_runs=$((lg_runs + 1)); else ref_runs=$((ref_runs + 1)); fi
            CPU_OUT=$cpu
            if "$@"; then
                st=ok
                if [[ $tool == loadgen ]]; then lg_ok=$((lg_ok + 1)); else ref_ok=$((ref_ok + 1)); fi
            else
                rc=$?; st="failed(rc=$rc)"; log "  $tool failed (rc=$rc), see ${out%.*}.err"
            fi
            CPU_OUT=""
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$kind" "$tool" "$label" "$st" "$out" "$rate" "$cpu" \
            >> "$manifest"
    }

    for spec in "${PACING_CASES[@]}"; do
        IFS=: read -r name kind rate <<<"$spec"
        want_case "$name" || continue
        local p=$RESULTS_DIR/pacing-$name
        case $kind in
        net)
            pacing_run "$name" "$kind" iperf3 "iperf3 -u -b $(( rate * NET_SIZE * 8 ))" "$rate" "$p.iperf3.json" \
                run_iperf3 "$p.iperf3.json" -b "$(( rate * NET_SIZE * 8 ))"
            pacing_run "$name" "$kind" loadgen "loadgen net --pps $rate" "$rate" "$p.loadgen.json" \
                run_loadgen_net "$p.loadgen.json" --pps "$rate" ;;
        disk)
            pacing_run "$name" "$kind" fio "fio --rate_iops $rate" "$rate" "$p.fio.json" \
                run_fio "$p.fio.json" randread 32 1 "$rate"
            pacing_run "$name" "$kind" loadgen "loadgen disk --iops $rate" "$rate" "$p.loadgen.json" \
                run_loadgen "$p.loadgen.json" randread 32 1 "$rate" ;;
        echo)
            pacing_run "$name" "$kind" sockperf "sockperf under-load --reply-every 1" "$rate" "$p.sockperf.txt" \
                run_sockperf "$p.sockperf.txt" under-load --mps "$rate" --full-rtt --reply-every 1
            pacing_run "$name" "$kind" loadgen "loadgen net --mode echo" "$rate" "$p.loadgen.json" \
                run_loadgen_net "$p.loadgen.json" --mode echo --pps "$rate" ;;
        esac
    done

    render pacing "$manifest" | tee "$RESULTS_DIR/pacing.summary.txt"
    echo
    echo "raw results: $RESULTS_DIR"

    # Not an assertion on performance: only "the tool could not run at all".
    (( ref_runs == 0 || ref_ok > 0 )) || { log "the peers failed on every run"; return 2; }
    (( lg_runs == 0 || lg_ok > 0 )) || { log "loadgen failed on every run"; return 3; }
    return 0
}

# ---------------------------------------------------------------- dispatch --

SECTIONS=(disk net pacing)   # implemented sections, in the order `all` runs them

usage() {
    local IFS='|'
    echo "usage: $0 {${SECTIONS[*]}|all}" >&2
    echo "  env: BENCH_DURATION BENCH_RAMP BENCH_RESULTS_DIR BENCH_TOOLS BENCH_CASES" >&2
    echo "       BENCH_ZRAM_SIZE BENCH_FILE_SIZE BENCH_TARGET BENCH_NET_TUNED (see header of $0)" >&2
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
        disk|net|pacing)
            set +e; run_section "$section"; rc=$?; set -e ;;
        -h|--help|help)
            usage ;;
        *)
            usage; rc=1 ;;
    esac
    return "$rc"
}

main "$@"
