#!/usr/bin/env bash
# Pod start benchmarks: start-to-exit of a trivial app (busybox-static `true`) with a warm store,
# `appcctl run` vs crun, runc, systemd-nspawn, bwrap and a bare `unshare` + `chroot` floor on the
# same rootfs, all measured in the same run, round-robin; start time of a 1 GiB image vs a small
# one; and the memory of appcctl and appc-init while a pod runs. See benches/README.md.
#
# Run as root from the repository root:   bash benches/pod_start.sh
# Environment:
#   BENCH_RUNS        timed runs of each runner (round-robin, the median is the goal's measure) (30)
#   BENCH_WARMUP      untimed runs of each runner before the timed ones                          (3)
#   BENCH_TMP         parent of the scratch directory (store, rootfs, bundles)           (/var/tmp)
#   BENCH_BIG_MIB     size of the big image's payload, MiB (256 files of BIG_MIB/256 MiB)    (1024)
#   BENCH_BIG_NO_OVERLAY  1: also time `run --no-overlay` of the big image (copies it: slow)
#   BENCH_NO_BUILD    1: skip `cargo build`, use the existing target/release/{appcctl,appc-init}
#   BENCH_NO_APT      1: do not apt-get install missing peers (rows whose tool is missing are skipped)
#   BENCH_KEEP        1: keep the scratch directory (printed at the end) for profiling
set -euo pipefail

RUNS=${BENCH_RUNS:-30}
WARMUP=${BENCH_WARMUP:-3}
TMP_PARENT=${BENCH_TMP:-/var/tmp}
BIG_MIB=${BENCH_BIG_MIB:-1024}

die() { echo "pod_start.sh: $*" >&2; exit 1; }
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

[[ $EUID -eq 0 ]] || die "run as root (pods need namespaces and mounts)"
[[ -f Cargo.toml && -d src/exec ]] || die "run from the repository root"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS=$RUNS is not a positive integer"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "BENCH_WARMUP=$WARMUP is not a non-negative integer"
[[ $BIG_MIB =~ ^[1-9][0-9]*$ ]] || die "BENCH_BIG_MIB=$BIG_MIB is not a positive integer"
[[ -n ${EPOCHREALTIME:-} ]] || die "bash >= 5 is needed (EPOCHREALTIME)"

# ---------------------------------------------------------------------------------------------
# Tools: the peers and what the script itself uses, from Debian; only what is missing.
# ---------------------------------------------------------------------------------------------
declare -A PKG_OF=([crun]=crun [runc]=runc [bwrap]=bubblewrap [systemd-nspawn]=systemd-container
    [jq]=jq [unshare]=util-linux [nsenter]=util-linux)
MISSING=()
for tool in "${!PKG_OF[@]}"; do
    command -v "$tool" >/dev/null || MISSING+=("${PKG_OF[$tool]}")
done
[[ -x /bin/busybox ]] && /bin/busybox --list 2>/dev/null | grep -qx true \
    && ! ldd /bin/busybox >/dev/null 2>&1 || MISSING+=(busybox-static)
if ((${#MISSING[@]})); then
    mapfile -t MISSING < <(printf '%s\n' "${MISSING[@]}" | sort -u)
    if [[ ${BENCH_NO_APT:-0} == 1 ]]; then
        log "missing (BENCH_NO_APT=1, not installing): ${MISSING[*]}"
    else
        log "installing: ${MISSING[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${MISSING[@]}" >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${MISSING[@]}" >&2; } \
            || die "apt-get install ${MISSING[*]} failed"
    fi
fi
for tool in jq unshare chroot; do command -v "$tool" >/dev/null || die "$tool is needed"; done
BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] && ! ldd "$BUSYBOX" >/dev/null 2>&1 || die "$BUSYBOX is not a static busybox (apt-get install busybox-static)"

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
    log "building appcctl and appc-init (release)"
    cargo build --release --locked --bins >&2
fi
APPCCTL=$PWD/target/release/appcctl
[[ -x $APPCCTL && -x $PWD/target/release/appc-init ]] || die "target/release/appcctl or appc-init missing"
REVISION=$(git describe --always --dirty 2>/dev/null || echo unknown)
BUILT=$(date -r "$APPCCTL" '+%F %T')

# ---------------------------------------------------------------------------------------------
# Scratch directory; everything the script creates lives in it and goes at exit.
# ---------------------------------------------------------------------------------------------
mkdir -p "$TMP_PARENT"
T=$(mktemp -d "$TMP_PARENT/appc-podstart.XXXXXX")
STORE=$T/store
BG_PIDS=()
cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -d $STORE ]]; then
        "$APPCCTL" --dir "$STORE" gc --grace-period 0s >/dev/null 2>&1 || true
    fi
    for c in $(crun list -q 2>/dev/null | grep "^podstart-$$-" || true); do crun delete -f "$c" >/dev/null 2>&1 || true; done
    for c in $(runc list -q 2>/dev/null | grep "^podstart-$$-" || true); do runc delete -f "$c" >/dev/null 2>&1 || true; done
    if mountpoint -q "$T/ns/mnt" 2>/dev/null; then umount "$T/ns/mnt" || true; fi
    if mountpoint -q "$T/ns" 2>/dev/null; then umount "$T/ns" || true; fi
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "scratch directory kept: $T" >&2
    elif grep -q " ${T}[/ ]" /proc/self/mounts; then
        echo "pod_start.sh: something is still mounted under $T; not removing it" >&2
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Images. Small: busybox-static (~2 MiB) whose app is `/bin/busybox true`; `/usr` and
# `/etc/os-release` only so that systemd-nspawn accepts the tree as an OS. Big: the same plus
# 256 files of random bytes, BIG_MIB MiB in all. Both uncompressed (import time is not measured).
# ---------------------------------------------------------------------------------------------
make_layout() { # DIR NAME
    mkdir -p "$1/rootfs/bin" "$1/rootfs/usr" "$1/rootfs/etc" "$1/rootfs/tmp"
    cp "$BUSYBOX" "$1/rootfs/bin/busybox"
    printf 'ID=podstart-bench\n' >"$1/rootfs/etc/os-release"
    cat >"$1/manifest" <<JSON
{"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "$2",
 "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}],
 "app": {"exec": ["/bin/busybox", "true"], "user": "0", "group": "0"}}
JSON
}
SMALL=example.com/podstart-small
BIG=example.com/podstart-big
log "building the images (small: busybox; big: + $BIG_MIB MiB of random data in 256 files)"
make_layout "$T/small" "$SMALL"
make_layout "$T/big" "$BIG"
mkdir -p "$T/big/rootfs/usr/share/podstart"
FILE_KIB=$((BIG_MIB * 1024 / 256))
for i in $(seq -w 0 255); do
    head -c "$((FILE_KIB * 1024))" /dev/urandom >"$T/big/rootfs/usr/share/podstart/f$i"
done
"$APPCCTL" image build --no-compression "$T/small" "$T/small.aci" >/dev/null
"$APPCCTL" image build --no-compression "$T/big" "$T/big.aci" >/dev/null
log "importing both into $STORE"
"$APPCCTL" --dir "$STORE" --insecure-options=image fetch "$T/small.aci" >/dev/null 2>"$T/fetch.err" \
    || { cat "$T/fetch.err" >&2; die "import of small.aci failed"; }
"$APPCCTL" --dir "$STORE" --insecure-options=image fetch "$T/big.aci" >/dev/null 2>"$T/fetch.err" \
    || { cat "$T/fetch.err" >&2; die "import of big.aci failed"; }
SMALL_BYTES=$(du -sb "$T/small/rootfs" | cut -f1)
BIG_BYTES=$(du -sb "$T/big/rootfs" | cut -f1)
rm -rf "$T/big" "$T/big.aci" "$T/small.aci"

# The one rootfs every peer runs: the small image rendered by the store.
ROOT=$T/rootfs
"$APPCCTL" --dir "$STORE" image render --rootfs-only "$SMALL" "$ROOT" >/dev/null
[[ -x $ROOT/bin/busybox && -d $ROOT/usr ]] || die "rendered rootfs $ROOT lacks bin/busybox or usr/"

# OCI bundles for crun and runc: `crun spec`'s default config (pid, network, ipc, uts and mount
# namespaces; /proc, /dev, /sys, cgroup mounts; no user namespace), with our rootfs (read-only)
# and app, no terminal.
mkdir -p "$T/bundle" "$T/bundle-sleep"
command -v crun >/dev/null && (cd "$T/bundle" && crun spec) \
    || (cd "$T/bundle" && runc spec) || die "neither crun spec nor runc spec worked"
jq --arg r "$ROOT" '.root.path = $r | .root.readonly = true | .process.terminal = false
    | .process.args = ["/bin/busybox", "true"]' "$T/bundle/config.json" >"$T/bundle/c.json"
mv "$T/bundle/c.json" "$T/bundle/config.json"
jq '.process.args = ["/bin/busybox", "sleep", "3"]' "$T/bundle/config.json" >"$T/bundle-sleep/config.json"

# crun refuses a hybrid cgroup layout (cgroup v1 controllers plus a cgroup2 tree at
# /sys/fs/cgroup/unified): "cgroups in hybrid mode not supported, drop all controllers from
# cgroupv2". Check whether it does here; if so, give it a persistent private mount namespace
# with the unified tree unmounted, entered with `nsenter --mount` (one exec, the cheapest wrapper).
CRUN=()
CRUN_NOTE="crun not installed"
if command -v crun >/dev/null; then
    if crun run -b "$T/bundle" "podstart-$$-probe" >/dev/null 2>"$T/crun.err"; then
        CRUN=(crun)
        CRUN_NOTE="crun runs directly (no mount-namespace wrapper needed)"
    elif grep -q hybrid "$T/crun.err" && mountpoint -q /sys/fs/cgroup/unified; then
        mkdir "$T/ns"
        mount --bind "$T/ns" "$T/ns"
        mount --make-private "$T/ns"
        touch "$T/ns/mnt"
        unshare --mount="$T/ns/mnt" --propagation private umount /sys/fs/cgroup/unified \
            || die "cannot set up the private mount namespace for crun"
        CRUN_ERR=$(grep -m1 hybrid "$T/crun.err" | tr -d "\n")
        CRUN=(nsenter --mount="$T/ns/mnt" crun)
        "${CRUN[@]}" run -b "$T/bundle" "podstart-$$-probe" >/dev/null 2>"$T/crun.err" \
            || { cat "$T/crun.err" >&2; die "crun fails even without /sys/fs/cgroup/unified"; }
        CRUN_NOTE="crun refuses the hybrid cgroup layout here (\"$CRUN_ERR\"): run as 'nsenter --mount=NS crun', NS a private mount namespace without /sys/fs/cgroup/unified"
    else
        cat "$T/crun.err" >&2
        die "crun run fails"
    fi
fi
[[ ${BENCH_VERBOSE:-0} == 1 ]] && log "$CRUN_NOTE"

# ---------------------------------------------------------------------------------------------
# Runners. Each is a function run with stdout and stderr to a file; a non-zero exit fails the
# bench. Untimed work between runs goes in after_NAME (appcctl: gc of the exited pod).
# ---------------------------------------------------------------------------------------------
SEQ=0
r_appcctl() { "$APPCCTL" --dir "$STORE" run "$SMALL"; }
r_appcctl_big() { "$APPCCTL" --dir "$STORE" run "$BIG"; }
r_appcctl_nooverlay() { "$APPCCTL" --dir "$STORE" run --no-overlay "$SMALL"; }
r_appcctl_big_nooverlay() { "$APPCCTL" --dir "$STORE" run --no-overlay "$BIG"; }
r_crun() { "${CRUN[@]}" run -b "$T/bundle" "podstart-$$-$SEQ"; }
r_runc() { runc run -b "$T/bundle" "podstart-$$-$SEQ"; }
r_nspawn() { systemd-nspawn --register=no --keep-unit -q -D "$ROOT" /bin/busybox true; }
r_bwrap() { bwrap --bind "$ROOT" / --proc /proc --dev /dev --unshare-all /bin/busybox true; }
# The floor: new pid, mount, ipc, uts and network namespaces (those a pod gets), fork into the
# pid namespace, chroot, exec the app. No /proc, /dev, overlay, cgroup or security setup.
r_floor() { unshare -fpmiun chroot "$ROOT" /bin/busybox true; }
# What the timing loop itself costs: fork + exec of a static binary that exits at once.
r_exec() { "$BUSYBOX" true; }
gc_pods() { "$APPCCTL" --dir "$STORE" gc --grace-period 0s >/dev/null 2>&1; }
after_appcctl() { gc_pods; }
after_appcctl_big() { gc_pods; }
after_appcctl_nooverlay() { gc_pods; }
after_appcctl_big_nooverlay() { gc_pods; }

RUNNERS=(appcctl appcctl_big appcctl_nooverlay)
[[ ${BENCH_BIG_NO_OVERLAY:-0} == 1 ]] && RUNNERS+=(appcctl_big_nooverlay)
((${#CRUN[@]})) && RUNNERS+=(crun)
SKIPPED=()
if command -v runc >/dev/null && runc run -b "$T/bundle" "podstart-$$-probe" >/dev/null 2>"$T/runc.err"; then
    RUNNERS+=(runc)
else
    SKIPPED+=("runc: $(head -n1 "$T/runc.err" 2>/dev/null || echo 'not installed')")
fi
command -v systemd-nspawn >/dev/null && RUNNERS+=(nspawn) || SKIPPED+=("nspawn: not installed")
command -v bwrap >/dev/null && RUNNERS+=(bwrap) || SKIPPED+=("bwrap: not installed")
RUNNERS+=(floor exec)

declare -A LABEL=(
    [appcctl]="appcctl run (small image)"
    [appcctl_big]="appcctl run (${BIG_MIB} MiB image)"
    [appcctl_nooverlay]="appcctl run --no-overlay (small)"
    [appcctl_big_nooverlay]="appcctl run --no-overlay (${BIG_MIB} MiB)"
    [crun]="crun run"
    [runc]="runc run"
    [nspawn]="systemd-nspawn"
    [bwrap]="bwrap --unshare-all"
    [floor]="unshare -fpmiun + chroot"
    [exec]="fork+exec of busybox true"
)

# run_one NAME: one run; appends its wall time in ms to $T/NAME.times.
run_one() {
    local name=$1 t0 t1 rc=0
    SEQ=$((SEQ + 1))
    t0=$EPOCHREALTIME
    "r_$name" >"$T/run.out" 2>"$T/run.err" || rc=$?
    t1=$EPOCHREALTIME
    if ((rc != 0)); then
        cat "$T/run.out" "$T/run.err" >&2
        die "$name failed (exit $rc)"
    fi
    if declare -F "after_$name" >/dev/null; then "after_$name"; fi
    echo "${t0/./} ${t1/./}" | awk '{printf "%.3f\n", ($2 - $1) / 1000}' >>"$T/$name.times"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load before timing: $LOAD_BEFORE ($(nproc) CPUs)"
log "warm-up: $WARMUP untimed runs of each of: ${RUNNERS[*]}"
for ((i = 0; i < WARMUP; i++)); do
    for n in "${RUNNERS[@]}"; do run_one "$n"; done
done
rm -f "$T"/*.times
log "timing: $RUNS rounds, round-robin, starting one runner later each round"
T_START=$EPOCHREALTIME
for ((i = 0; i < RUNS; i++)); do
    k=${#RUNNERS[@]}
    for ((j = 0; j < k; j++)); do run_one "${RUNNERS[(i + j) % k]}"; done
    if (((i + 1) % 10 == 0)); then log "round $((i + 1))/$RUNS"; fi
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Memory: a pod whose app sleeps; appc-init is appcctl's child (comm appc-init), the app its
# child. VmHWM is the peak RSS; Pss and Private_* (smaps_rollup) say what the pod really costs.
# ---------------------------------------------------------------------------------------------
children() { cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . || true; }
status_kib() { awk -v k="$2:" '$1 == k {print $2; exit}' "/proc/$1/status"; }
rollup_kib() { awk -v k="$2:" '$1 == k {print $2; exit}' "/proc/$1/smaps_rollup"; }
# mem_json PID: a JSON object of the numbers above, in KiB.
mem_json() {
    local p=$1 k v args=()
    for k in VmHWM VmRSS RssAnon RssFile RssShmem; do v=$(status_kib "$p" "$k"); args+=(--argjson "$k" "${v:-0}"); done
    for k in Pss Pss_Anon Pss_File Pss_Shmem Private_Clean Private_Dirty Shared_Clean Shared_Dirty; do
        v=$(rollup_kib "$p" "$k"); args+=(--argjson "$k" "${v:-0}")
    done
    jq -n "${args[@]}" '$ARGS.named'
}
# top_maps PID: RSS by mapping (KiB), largest first.
top_maps() {
    awk '/^[0-9a-f]+-[0-9a-f]+ / {name = (NF >= 6 ? $6 : "[anon]"); if ($6 ~ /^\/memfd:/) name = "memfd (appc-init image)"}
         $1 == "Rss:" {rss[name] += $2}
         END {for (n in rss) if (rss[n] > 0) printf "%d %s\n", rss[n], n}' "/proc/$1/smaps" | sort -rn | head -n 6
}

log "memory: a pod running 'busybox sleep 3'"
"$APPCCTL" --dir "$STORE" run "$SMALL" --exec /bin/busybox -- sleep 3 >"$T/mem.out" 2>"$T/mem.err" &
CTL_PID=$!
BG_PIDS+=("$CTL_PID")
INIT_PID="" APP_PID=""
for ((i = 0; i < 100; i++)); do
    for c in $(children "$CTL_PID"); do
        [[ $(cat "/proc/$c/comm" 2>/dev/null) == appc-init ]] && INIT_PID=$c
    done
    [[ -n $INIT_PID ]] && APP_PID=$(children "$INIT_PID" | head -n1)
    [[ -n $APP_PID && $(cat "/proc/$APP_PID/comm" 2>/dev/null) == busybox ]] && break
    APP_PID=""
    sleep 0.02
done
[[ -n $INIT_PID && -n $APP_PID ]] || { cat "$T/mem.err" >&2; die "no appc-init with a running app under appcctl ($CTL_PID)"; }
sleep 0.5    # the app runs; appc-init is in its wait loop
MEM_INIT=$(mem_json "$INIT_PID")
MEM_CTL=$(mem_json "$CTL_PID")
MAPS_INIT=$(top_maps "$INIT_PID")
MAPS_CTL=$(top_maps "$CTL_PID")
# crun for comparison: the `crun run` process that waits for the container.
MEM_CRUN=null
if ((${#CRUN[@]})); then
    "${CRUN[@]}" run -b "$T/bundle-sleep" "podstart-$$-mem" >/dev/null 2>&1 &
    CRUN_PID=$!    # nsenter execs crun: the same pid
    BG_PIDS+=("$CRUN_PID")
    sleep 0.7
    [[ $(cat "/proc/$CRUN_PID/comm" 2>/dev/null) == crun ]] && MEM_CRUN=$(mem_json "$CRUN_PID")
fi
wait "$CTL_PID" || { cat "$T/mem.err" >&2; die "the sleeping pod failed"; }
[[ -n ${CRUN_PID:-} ]] && { wait "$CRUN_PID" || true; }
BG_PIDS=()
gc_pods

# ---------------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------------
# stats NAME: "median mean stddev min max" of the run times (ms).
stats() {
    sort -n "$T/$1.times" | awk '{v[NR] = $1; s += $1; ss += $1 * $1}
        END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
             mean = s / NR; var = ss / NR - mean * mean; if (var < 0) var = 0
             printf "%.2f %.2f %.2f %.2f %.2f\n", m, mean, sqrt(var), v[1], v[NR]}'
}
declare -A MED MEAN SD MIN MAX
for n in "${RUNNERS[@]}"; do
    read -r MED[$n] MEAN[$n] SD[$n] MIN[$n] MAX[$n] < <(stats "$n")
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }
verdict() { awk -v r="$1" -v g="$2" 'BEGIN {if (g == "") print "-"; else if (r == "n/a") print "n/a"; else print (r <= g ? "PASS" : "MISS")}'; }
has() { [[ -n ${MED[$1]:-} ]]; }

echo
echo "== pod start-to-exit, trivial app (busybox true), warm store: $RUNS runs each, round-robin (ms) =="
printf '%-36s %9s %9s %9s %9s %9s\n' runner median mean stddev min max
for n in "${RUNNERS[@]}"; do
    printf '%-36s %9s %9s %9s %9s %9s\n' "${LABEL[$n]}" "${MED[$n]}" "${MEAN[$n]}" "${SD[$n]}" "${MIN[$n]}" "${MAX[$n]}"
done

RATIOS_JSON='[]'
echo
echo "== ratios (medians; ours / peer) =="
printf '%-44s %8s %8s %s\n' ratio value goal verdict
add_ratio() { # LABEL OURS PEER GOAL
    has "$2" && has "$3" || return 0
    local r
    r=$(ratio "${MED[$2]}" "${MED[$3]}")
    printf '%-44s %8s %8s %s\n' "$1" "$r" "${4:+<= $4}" "$(verdict "$r" "$4")"
    RATIOS_JSON=$(jq --arg l "$1" --arg o "$2" --arg p "$3" --arg r "$r" --arg g "$4" --arg v "$(verdict "$r" "$4")" \
        '. + [{label: $l, ours: $o, peer: $p, ratio: ($r | tonumber? // null), goal: ($g | tonumber? // null), verdict: $v}]' <<<"$RATIOS_JSON")
}
add_ratio "appcctl / crun" appcctl crun 1.0
add_ratio "appcctl / systemd-nspawn" appcctl nspawn 0.25
add_ratio "appcctl / runc" appcctl runc ""
add_ratio "appcctl / bwrap" appcctl bwrap ""
add_ratio "appcctl / floor (unshare+chroot)" appcctl floor ""
add_ratio "${BIG_MIB} MiB image / small image (appcctl)" appcctl_big appcctl 1.1
add_ratio "--no-overlay / overlay (small image)" appcctl_nooverlay appcctl ""
add_ratio "--no-overlay / overlay (${BIG_MIB} MiB image)" appcctl_big_nooverlay appcctl_big ""
add_ratio "crun / floor" crun floor ""

j() { jq -r "$1" <<<"$2"; }
INIT_HWM=$(j .VmHWM "$MEM_INIT")
MEM_VERDICT=$(awk -v h="$INIT_HWM" 'BEGIN {print (h <= 1024 ? "PASS" : "MISS")}')
echo
echo "== memory while a pod runs (KiB; VmHWM = peak RSS) =="
printf '%-22s %7s %7s %7s %7s %7s %9s %9s %9s %9s\n' process VmHWM VmRSS Pss Pss_Anon Pss_File Pss_Shmem Priv_Dirty Priv_Clean Shr_Clean
mem_row() {
    [[ $2 == null ]] && return 0
    printf '%-22s %7s %7s %7s %7s %7s %9s %9s %9s %9s\n' "$1" "$(j .VmHWM "$2")" "$(j .VmRSS "$2")" "$(j .Pss "$2")" \
        "$(j .Pss_Anon "$2")" "$(j .Pss_File "$2")" "$(j .Pss_Shmem "$2")" "$(j .Private_Dirty "$2")" \
        "$(j .Private_Clean "$2")" "$(j .Shared_Clean "$2")"
}
mem_row "appc-init (pid 1)" "$MEM_INIT"
mem_row "appcctl run" "$MEM_CTL"
mem_row "crun run (peer)" "$MEM_CRUN"
echo "appc-init VmHWM $INIT_HWM KiB, goal <= 1024 KiB: $MEM_VERDICT"
echo "appc-init RSS by mapping (KiB):"
sed 's/^/    /' <<<"$MAPS_INIT"
echo "appcctl RSS by mapping (KiB):"
sed 's/^/    /' <<<"$MAPS_CTL"

echo
echo "notes:"
echo "  $CRUN_NOTE"
for s in "${SKIPPED[@]}"; do echo "  skipped $s"; done
echo "  every runner runs /bin/busybox true on the same rootfs ($ROOT: the small image rendered by the store);"
echo "  appcctl: 'appcctl --dir STORE run IMAGE' (a new pod each run; 'gc --grace-period 0s' after it, untimed);"
echo "  crun/runc: 'crun spec' defaults (pid, net, ipc, uts, mount namespaces), rootfs read-only;"
echo "  nspawn: 'systemd-nspawn --register=no --keep-unit -q -D ROOT /bin/busybox true' (host network);"
echo "  bwrap: 'bwrap --bind ROOT / --proc /proc --dev /dev --unshare-all /bin/busybox true';"
echo "  floor: 'unshare -fpmiun chroot ROOT /bin/busybox true' (no /proc, /dev, cgroups or security setup);"
echo "  fork+exec: the timing loop's own cost, included in every row."
echo "images: small $(awk -v b="$SMALL_BYTES" 'BEGIN {printf "%.1f MiB", b / 1048576}'), big $(awk -v b="$BIG_BYTES" 'BEGIN {printf "%.1f MiB", b / 1048576}') (256 random files + busybox)"
echo "machine: nproc $(nproc), kernel $(uname -r), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo)," \
    "cpu $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "versions: $(crun --version 2>/dev/null | head -n1); $(runc --version 2>/dev/null | head -n1); $(bwrap --version 2>/dev/null); $(systemd-nspawn --version 2>/dev/null | head -n1)"
echo "load average (1/5/15 min): before $LOAD_BEFORE, after $LOAD_AFTER (re-run if it was high: 2 CPUs here means >1 is busy)"
echo "appcctl: $APPCCTL built $BUILT; tree at start: $REVISION"

# JSON results, outside the scratch directory (which goes at exit).
RESULTS=$(mktemp -d "${TMPDIR:-/tmp}/appc-podstart-results.XXXXXX")/pod_start.json
TIMES_JSON=$(for n in "${RUNNERS[@]}"; do
    jq -n --arg n "$n" --arg l "${LABEL[$n]}" --argjson med "${MED[$n]}" --argjson mean "${MEAN[$n]}" \
        --argjson sd "${SD[$n]}" --argjson min "${MIN[$n]}" --argjson max "${MAX[$n]}" \
        --slurpfile runs <(cat "$T/$n.times") \
        '{name: $n, label: $l, median_ms: $med, mean_ms: $mean, stddev_ms: $sd, min_ms: $min, max_ms: $max, runs_ms: $runs}'
done | jq -s .)
jq -n --arg date "$(date -Is)" --arg rev "$REVISION" --argjson runs "$RUNS" --arg load_before "$LOAD_BEFORE" \
    --arg load_after "$LOAD_AFTER" --arg crun_note "$CRUN_NOTE" --argjson big_mib "$BIG_MIB" \
    --argjson times "$TIMES_JSON" --argjson ratios "$RATIOS_JSON" \
    --argjson init "$MEM_INIT" --argjson ctl "$MEM_CTL" --argjson crun "$MEM_CRUN" \
    '{date: $date, revision: $rev, runs: $runs, big_image_mib: $big_mib, load_before: $load_before,
      load_after: $load_after, crun_note: $crun_note, start_to_exit: $times, ratios: $ratios,
      memory_kib: {appc_init: $init, appcctl: $ctl, crun: $crun},
      appc_init_vmhwm_goal_kib: 1024}' >"$RESULTS"
echo "results: $RESULTS"
