# bench/disk.sh - the disk section: fio vs `loadgen disk` on zram, a file or BENCH_TARGET.
# Sourced by bench.sh, which sets the settings and runs it under `set -euo pipefail`.

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

# Against fio at its best (issue 13): 4k randread at qd32, one fio job against one loadgen
# worker, DISK_PAIRS pairs run interleaved (fio first in odd pairs, loadgen first in even
# ones), each run's whole process tree's CPU sampled after warm-up, so the render prints the
# median pair and CPU per I/O for both (an SQ thread is a thread of its tool's process: it counts).
# name|fio flags|loadgen flags; SQCPU stands for the last CPU this shell may use, where
# both tools pin their SQ thread (loadgen pins its worker to the first).
FIO_TUNED="--iodepth_batch_submit=16 --iodepth_batch_complete_min=8 --fixedbufs --registerfiles"
DISK_TUNED_CASES=(
    "tuned-qd32|$FIO_TUNED|"
    "sqpoll-qd32|$FIO_TUNED --sqthread_poll=1 --sqthread_poll_cpu=SQCPU|--sqpoll SQCPU"
)
DISK_PAIRS=${BENCH_DISK_PAIRS:-3}

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

# run_fio_tuned OUT FLAGS: fio's 4k randread at qd32, one job, with FLAGS (word-split)
run_fio_tuned() {
    local out=$1 flags=$2
    # shellcheck disable=SC2206 # FLAGS is a list of options
    local cmd=(fio --name=tuned --filename="$TARGET" --size="$TARGET_SIZE" --rw=randread --bs=4k
        --iodepth=32 --numjobs=1 --thread --ioengine=io_uring --direct=1 $flags
        --time_based --runtime="$DURATION" --ramp_time="$RAMP" --norandommap --randrepeat=0
        --output-format=json --output="$out")
    echo "${cmd[*]}" > "${out%.json}.cmd"
    run_tool /dev/null "${out%.json}.err" "${cmd[@]}"
}

# run_loadgen_tuned OUT FLAGS: loadgen's same load, one worker, with FLAGS (word-split)
run_loadgen_tuned() {
    local out=$1 flags=$2
    # shellcheck disable=SC2206
    local cmd=("${LOADGEN[@]}" disk --target "$TARGET" --size "$TARGET_SIZE" --rw randread --bs 4k --qd 32
        --workers 1 --duration "${DURATION}s" --ramp "${RAMP}s" --iops max $flags --json "$out" --quiet)
    echo "${cmd[*]}" > "${out%.json}.cmd"
    run_tool "${out%.json}.out" "${out%.json}.err" "${cmd[@]}"
}

# The tuned pairs into disk-tuned.manifest.tsv: name pair tool label status out cpu
disk_tuned_pairs() {
    local lg_state=$1 manifest=$RESULTS_DIR/disk-tuned.manifest.tsv spec name fflags lflags pair tool out cpu st label
    local sq_cpu
    sq_cpu=$(python3 -c 'import os; print(max(os.sched_getaffinity(0)))')
    : > "$manifest"
    LIMIT_CLIENT=$(( DURATION + RAMP + 30 ))
    CPU_AFTER_S=$(( RAMP + 1 ))
    CPU_WINDOW_S=$(awk -v d="$DURATION" 'BEGIN { w = d - 1.5; print (w < 0.5 ? 0.5 : w) }')
    for spec in "${DISK_TUNED_CASES[@]}"; do
        IFS='|' read -r name fflags lflags <<<"$spec"
        want_case "$name" || continue
        fflags=${fflags//SQCPU/$sq_cpu} lflags=${lflags//SQCPU/$sq_cpu}
        for (( pair = 1; pair <= DISK_PAIRS; pair++ )); do
            # the first of a pair alternates, so neither tool always runs on a device the other warmed
            local order=(fio loadgen)
            (( pair % 2 )) || order=(loadgen fio)
            for tool in "${order[@]}"; do
                out=$RESULTS_DIR/disk-$name.$pair.$tool.json cpu=$RESULTS_DIR/disk-$name.$pair.$tool.cpu.json st=skipped
                [[ $tool == loadgen ]] && st=$lg_state
                if [[ $tool == fio ]] && want_tool fio || [[ $tool == loadgen && $st == ok ]]; then
                    log "[$name pair $pair] $tool ..."
                    rm -f "$cpu"
                    CPU_OUT=$cpu
                    if [[ $tool == fio ]]; then run_fio_tuned "$out" "$fflags"; else run_loadgen_tuned "$out" "$lflags"; fi \
                        && st=ok || { st="failed(rc=$?)"; log "  $tool failed, see ${out%.json}.err"; }
                    CPU_OUT=""
                fi
                label="fio $fflags"
                [[ $tool == loadgen ]] && label="loadgen ${lflags:-(its defaults)}"
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$pair" "$tool" "$label" "$st" "$out" "$cpu" \
                    >> "$manifest"
            done
        done
    done
}

# The prepare case: `loadgen disk prepare` against fio's sequential write (bs 128k, qd 16,
# one job) on a 1 GiB zram device of its own (hot_add), one after the other in the same run;
# the line gives each one's bandwidth and loadgen's over fio's. Measures, never asserts.
# fio writes with --scramble_buffers=0: its buffers filled with random bytes once, as loadgen's
# are. zram's cost depends on the data: fio's default scrambling (a few bytes patched per
# write) took zram 3x the kernel time of plain random pages here, which flattered loadgen 3x.
bench_prepare() {
    local n dev fjson=$RESULTS_DIR/disk-prepare.fio.json ljson=$RESULTS_DIR/disk-prepare.loadgen.json
    [[ -w /sys/class/zram-control/hot_add ]] || { log "[prepare] no zram-control: skipped"; return 0; }
    n=$(cat /sys/class/zram-control/hot_add) || return 1
    at_exit "echo $n > /sys/class/zram-control/hot_remove"
    dev=/dev/zram$n
    if [[ ! -b $dev ]]; then
        local majmin; majmin=$(cat "/sys/block/zram$n/dev") || return 1
        mknod "$dev" b "${majmin%%:*}" "${majmin##*:}" || return 1
        at_exit "rm -f $dev"
    fi
    echo 1G > "/sys/block/zram$n/disksize" || return 1
    at_exit "zram_reset $n"
    log "[prepare] fio sequential write 128k qd16 on $dev ..."
    fio --name=prepare --filename="$dev" --rw=write --bs=128k --iodepth=16 --numjobs=1 --direct=1 \
        --ioengine=io_uring --size=1G --scramble_buffers=0 --output-format=json --output="$fjson" 2>"${fjson%.json}.err" || return 1
    zram_reset "$n" && echo 1G > "/sys/block/zram$n/disksize" || return 1   # the same empty device for both
    log "[prepare] loadgen disk prepare on $dev ..."
    "${LOADGEN[@]}" disk prepare --target "$dev" --allow-destroy --quiet --json "$ljson" \
        >"${ljson%.json}.out" 2>"${ljson%.json}.err" || return 1
    local fbw lbw
    fbw=$(jq '.jobs[0].write.bw_bytes' "$fjson") lbw=$(jq '.bytes_per_s' "$ljson")
    awk -v f="$fbw" -v l="$lbw" 'BEGIN { printf "  prepare 1 GiB zram, 128k qd16: fio %.1f MiB/s, loadgen %.1f MiB/s, ratio %.2f\n", f / 1048576, l / 1048576, (f > 0 ? l / f : 0) }'
}

bench_disk() {
    ensure_fio
    start_results
    find_loadgen
    local lg_state=ok
    if ! want_tool loadgen; then lg_state=skipped
    elif [[ ${#LOADGEN[@]} -eq 0 ]]; then lg_state=unavailable; fi

    print_machine
    # The main target only for its cases: the two-targets row brings devices of its own.
    local case_spec want_main=0
    for case_spec in "${DISK_CASES[@]}"; do want_case "${case_spec%%:*}" && want_main=1; done
    for case_spec in "${DISK_TUNED_CASES[@]}"; do want_case "${case_spec%%|*}" && want_main=1; done
    (( want_main )) && setup_target
    local size_note=""
    [[ -n $TARGET_SIZE ]] && size_note=", $(numfmt --to=iec "$TARGET_SIZE")"
    printf '  %-12s %s\n' \
        fio       "$(fio --version)" \
        loadgen   "$(loadgen_version) [${LOADGEN[*]:-loadgen: not available}]" \
        target    "${TARGET:-none} (${TARGET_KIND:-not used}$size_note)" \
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

    (( want_main )) && disk_tuned_pairs "$lg_state"
    if want_case prepare && [[ $lg_state == ok ]] && want_tool fio; then
        # not in a pipeline: bench_prepare's cleanups (its zram device) go on this shell's list
        bench_prepare > "$RESULTS_DIR/disk-prepare.summary.txt" || log "prepare case failed"
        cat "$RESULTS_DIR/disk-prepare.summary.txt"
    fi

    (( want_main )) && render disk "$manifest" | tee "$RESULTS_DIR/disk.summary.txt"
    if want_case two-targets; then
        local targets_manifest=$RESULTS_DIR/disk-targets.manifest.tsv
        : > "$targets_manifest"
        if bench_two_targets "$targets_manifest" "$lg_state"; then
            echo
            render disk-targets "$targets_manifest" | tee -a "$RESULTS_DIR/disk.summary.txt"
        fi
    fi
    echo
    echo "raw results: $RESULTS_DIR"

    # Not an assertion on performance: only "the tool could not run at all".
    (( fio_runs == 0 || fio_ok > 0 )) || { log "fio failed on every case"; return 2; }
    (( lg_runs == 0 || lg_ok > 0 )) || { log "loadgen failed on every case"; return 3; }
    return 0
}


# ------------------------------------------------------- two targets in one run --
# Issue 13's "two targets" row: two zram devices hot_added for it (never zram0), each
# filled once; fio with one job per device and loadgen with --target A,B (a worker
# each), one run each, back to back, with the CPU of each tool's process tree sampled
# from 1 s after the ramp (bench/proc.py). Root only; the devices are removed after.
TWO_ZRAM_SIZE=${BENCH_TWO_ZRAM_SIZE:-1G}
TWO_QD=32

TWO_DEV=""
two_zram_add() {  # two_zram_add: sets TWO_DEV to /dev/zramN, a new device of TWO_ZRAM_SIZE (not in a
    local n majmin   # subshell: its cleanups go on this shell's list)
    TWO_DEV=""
    n=$(cat /sys/class/zram-control/hot_add) || return 1
    at_exit "echo $n > /sys/class/zram-control/hot_remove"
    if [[ ! -b /dev/zram$n ]]; then
        majmin=$(cat "/sys/block/zram$n/dev") || return 1
        mknod "/dev/zram$n" b "${majmin%%:*}" "${majmin##*:}" || return 1
        at_exit "rm -f /dev/zram$n"
    fi
    echo "$TWO_ZRAM_SIZE" > "/sys/block/zram$n/disksize" || return 1
    at_exit "zram_reset $n"
    TWO_DEV=/dev/zram$n
}

# bench_two_targets MANIFEST LOADGEN_STATE: one row, "two-targets", in MANIFEST
bench_two_targets() {
    local manifest=$1 lg_state=$2 a b dev
    if [[ $EUID -ne 0 || ! -w /sys/class/zram-control/hot_add ]]; then
        log "[two-targets] skipped: needs root and /sys/class/zram-control/hot_add"; return 1
    fi
    { two_zram_add && a=$TWO_DEV && two_zram_add && b=$TWO_DEV; } \
        || { log "[two-targets] skipped: could not add two zram devices"; return 1; }
    for dev in "$a" "$b"; do
        log "[two-targets] filling $dev ($TWO_ZRAM_SIZE) once ..."
        fio --name=fill --filename="$dev" --rw=write --bs=1M --direct=1 --ioengine=io_uring --iodepth=8 \
            --size="$(blockdev --getsize64 "$dev")" --output=/dev/null >/dev/null 2>&1 \
            || { log "[two-targets] filling $dev failed"; return 1; }
    done
    local p=$RESULTS_DIR/disk-two-targets fst=skipped lst=$lg_state
    local batch=$(( TWO_QD < 32 ? TWO_QD : 32 ))
    LIMIT_CLIENT=$(( DURATION + RAMP + 30 ))
    CPU_AFTER_S=$(( RAMP + 1 ))
    CPU_WINDOW_S=$(awk -v d="$DURATION" 'BEGIN { w = d - 1.5; print (w < 0.5 ? 0.5 : w) }')
    if want_tool fio; then
        log "[two-targets] fio, a job on each of $a $b ..."
        # Options before the first --name are global: both jobs take them; each --name starts a job.
        local cmd=(fio --thread --group_reporting --ioengine=io_uring --rw=randread --bs=4k --direct=1
            --iodepth="$TWO_QD" --fixedbufs --registerfiles --hipri=0
            --iodepth_batch_submit="$batch" --iodepth_batch_complete_min=1 --iodepth_batch_complete_max="$batch"
            --time_based --runtime="$DURATION" --ramp_time="$RAMP" --norandommap --randrepeat=0
            --lat_percentiles=1 --output-format=json --output="$p.fio.json"
            --name=a --filename="$a" --name=b --filename="$b")
        echo "${cmd[*]}" > "$p.fio.cmd"
        CPU_OUT=$p.fio.cpu.json
        if run_tool /dev/null "$p.fio.err" "${cmd[@]}"; then fst=ok; else fst="failed(rc=$?)"; log "  fio failed, see $p.fio.err"; fi
        CPU_OUT=""
    fi
    if [[ $lg_state == ok ]]; then
        log "[two-targets] loadgen --target $a,$b ..."
        local cmd=("${LOADGEN[@]}" disk --target "$a,$b" --rw randread --bs 4k --qd "$TWO_QD" --workers 2
            --duration "${DURATION}s" --ramp "${RAMP}s" --iops max --json "$p.loadgen.json" --quiet)
        echo "${cmd[*]}" > "$p.loadgen.cmd"
        CPU_OUT=$p.loadgen.cpu.json
        if run_tool "$p.loadgen.out" "$p.loadgen.err" "${cmd[@]}"; then lst=ok
        else lst="failed(rc=$?)"; log "  loadgen failed, see $p.loadgen.err"; fi
        CPU_OUT=""
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' two-targets "$fst" "$p.fio.json" "$p.fio.cpu.json" \
        "$lst" "$p.loadgen.json" "$p.loadgen.cpu.json" >> "$manifest"
}
