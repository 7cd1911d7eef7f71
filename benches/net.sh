#!/usr/bin/env bash
# Pod start with networking: start-to-exit of a trivial app (busybox-static `true`, warm store)
# with `appcctl run --net=default` (bridge, veth, address, route, nftables) against
# `--net=none` (loopback only) and `--net=default --port` (plus two DNAT rules), measured in the
# same run, round-robin. See benches/README.md ("Networking").
#
# Everything runs inside a network namespace of the script's own (`unshare --net`), with a
# private IPAM dir: the machine's network, ip_forward and nftables ruleset are never touched.
#
# Run as root from the repository root:   bash benches/net.sh
# Environment:
#   BENCH_RUNS      timed runs of each variant (30)
#   BENCH_WARMUP    untimed runs of each variant first (3)
#   BENCH_TMP       parent of the scratch directory (/var/tmp)
#   BENCH_NO_BUILD  1: use the existing target/<profile>/{appcctl,appc-init}
#   BENCH_PROFILE   release (default) or debug: which build is measured
set -euo pipefail

RUNS=${BENCH_RUNS:-30}
WARMUP=${BENCH_WARMUP:-3}
TMP_PARENT=${BENCH_TMP:-/var/tmp}
PROFILE=${BENCH_PROFILE:-release}

die() { echo "net.sh: $*" >&2; exit 1; }
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

[[ $EUID -eq 0 ]] || die "run as root (pods need namespaces, mounts and netlink)"
[[ -f Cargo.toml && -d src/net ]] || die "run from the repository root"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS=$RUNS is not a positive integer"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "BENCH_WARMUP=$WARMUP is not a non-negative integer"
[[ $PROFILE == release || $PROFILE == debug ]] || die "BENCH_PROFILE=$PROFILE is not release or debug"
[[ -n ${EPOCHREALTIME:-} ]] || die "bash >= 5 is needed (EPOCHREALTIME)"
for tool in nft unshare; do command -v "$tool" >/dev/null || die "$tool is needed (nftables, util-linux)"; done
BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] || die "$BUSYBOX is missing (apt-get install busybox-static)"

# Re-exec inside a private network namespace (loopback up), once.
if [[ -z ${NET_BENCH_INNER:-} ]]; then
    if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
        log "building appcctl and appc-init ($PROFILE)"
        if [[ $PROFILE == release ]]; then cargo build --release --locked --bins >&2; else cargo build --locked --bins >&2; fi
    fi
    exec env NET_BENCH_INNER=1 unshare --net bash -c 'ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
fi

APPCCTL=$PWD/target/$PROFILE/appcctl
[[ -x $APPCCTL && -x $PWD/target/$PROFILE/appc-init ]] || die "target/$PROFILE/appcctl or appc-init missing"
REVISION=$(git describe --always --dirty 2>/dev/null || echo unknown)

mkdir -p "$TMP_PARENT"
T=$(mktemp -d "$TMP_PARENT/appc-netbench.XXXXXX")
STORE=$T/store
export APPC_NET_DIR=$T/netstate
cleanup() {
    "$APPCCTL" --dir "$STORE" gc --grace-period 0s >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$T/img/rootfs/bin" "$T/img/rootfs/etc"
cp "$BUSYBOX" "$T/img/rootfs/bin/busybox"
cat >"$T/img/manifest" <<JSON
{"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/netbench",
 "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}],
 "app": {"exec": ["/bin/busybox", "true"], "user": "0", "group": "0",
         "ports": [{"name": "www", "protocol": "tcp", "port": 80}]}}
JSON
"$APPCCTL" image build --no-compression "$T/img" "$T/img.aci" >/dev/null
"$APPCCTL" --dir "$STORE" --insecure-options=image fetch "$T/img.aci" >/dev/null

r_none() { "$APPCCTL" --dir "$STORE" run --net=none example.com/netbench; }
r_default() { "$APPCCTL" --dir "$STORE" run --net=default example.com/netbench; }
r_port() { "$APPCCTL" --dir "$STORE" run --net=default --port www:8080 example.com/netbench; }
RUNNERS=(none default port)
declare -A TIMES
for r in "${RUNNERS[@]}"; do TIMES[$r]=""; done

# The first --net=default run creates the bridge, enables ip_forward and the nft table; the
# warm-up absorbs it, as a long-running host would.
log "warm-up: $WARMUP run(s) of each"
for ((i = 0; i < WARMUP; i++)); do
    for r in "${RUNNERS[@]}"; do "r_$r" >"$T/out" 2>&1 || { cat "$T/out" >&2; die "$r failed"; }; done
done
"$APPCCTL" --dir "$STORE" gc --grace-period 0s >/dev/null 2>&1
log "timing: $RUNS run(s) of each, round-robin"
for ((i = 0; i < RUNS; i++)); do
    for r in "${RUNNERS[@]}"; do
        t0=$EPOCHREALTIME
        "r_$r" >"$T/out" 2>&1 || { cat "$T/out" >&2; die "$r failed"; }
        t1=$EPOCHREALTIME
        TIMES[$r]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f ", (b - a) * 1000 }')"
    done
    "$APPCCTL" --dir "$STORE" gc --grace-period 0s >/dev/null 2>&1
done

stats() { # median mean min max of the times of $1
    tr ' ' '\n' <<<"${TIMES[$1]}" | grep -v '^$' | sort -n | awk '
        { v[NR] = $1; s += $1 }
        END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
              printf "%9.1f %9.1f %9.1f %9.1f", m, s / NR, v[1], v[NR] }'
}
echo "== pod start-to-exit, busybox true, warm store ($RUNS runs each, ms; $PROFILE build, revision $REVISION) =="
printf '%-34s %9s %9s %9s %9s\n' variant median mean min max
printf '%-34s %s\n' "run --net=none" "$(stats none)"
printf '%-34s %s\n' "run --net=default" "$(stats default)"
printf '%-34s %s\n' "run --net=default --port www:8080" "$(stats port)"
med() { stats "$1" | awk '{print $1}'; }
awk -v n="$(med none)" -v d="$(med default)" -v p="$(med port)" 'BEGIN {
    printf "default - none: %+.1f ms (x%.2f); port - default: %+.1f ms\n", d - n, d / n, p - d }'
