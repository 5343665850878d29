# bench/lib.sh - shared helpers of every section: logging, cleanup, the loadgen command,
# the machine description, bounded background processes and CPU sampling.
# Sourced by bench.sh, which sets the settings and runs it under `set -euo pipefail`.

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



# Prints the section's tables from its manifest (bench/render.py; also re-renders a
# stored results directory: python3 -m bench.render dir DIR).
render() {  # render SECTION MANIFEST
    python3 -m bench.render "$1" "$2" --duration "$DURATION"
}

tool_version() {  # tool_version CMD...: first line of its version output
    local v
    v=$("$@" 2>&1 | head -n 1) || true
    echo "${v:-not available}"
}


# Background processes of a section, by the pid of their `timeout` wrapper:
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
    local rc=0 tool sampler="" started=$EPOCHREALTIME pids=${CPU_OUT%.json}.pids
    if [[ -n $CPU_OUT ]]; then
        # Started first, so its own start-up is over when its samples are due, and at a
        # higher priority (root only; nice warns and goes on otherwise), so a loaded machine
        # does not make it late: it sleeps but for two reads of /proc.
        rm -f "$pids"
        bg_start "$LIMIT_CLIENT" /dev/null "${CPU_OUT%.json}.err" nice -n -10 python3 -m bench.proc --since "$started" \
            --after "$CPU_AFTER_S" --window "$CPU_WINDOW_S" --out "$CPU_OUT" --roots-file "$pids"
        sampler=$BG_PID
    fi
    bg_start "$@"
    tool=$BG_PID
    if [[ -n $sampler ]]; then
        echo "${CPU_ROOTS[*]} $tool" > "$pids.tmp" && mv "$pids.tmp" "$pids"
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

LIMIT_CLIENT=0 LIMIT_SERVER=0   # seconds, set by the sections that run tools in the background
