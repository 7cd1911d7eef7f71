#!/usr/bin/env bash
# Metadata service throughput and latency: requests per second and p50/p99 latency of GET
# endpoints of `appc-metadata` (standalone, scratch state, one registered pod) under wrk on
# loopback. See benches/README.md ("Metadata service"). Goal: >= 20k req/s and p99 < 2 ms.
#
# Run from the repository root (no root needed):   bash benches/metadata.sh
# Environment:
#   BENCH_DURATION  seconds per endpoint                                                      (10)
#   BENCH_CONNS     open connections (kept alive)                                              (16)
#   BENCH_THREADS   wrk threads                                                                 (1)
#   BENCH_WORKERS   the service's worker threads (--threads)                                    (2)
#   BENCH_PROFILE   release or debug: which build of appc-metadata                        (release)
#   BENCH_NO_BUILD  1: skip `cargo build`, use the existing target/$BENCH_PROFILE/appc-metadata
#   BENCH_NO_APT    1: do not apt-get install wrk, curl or jq when missing (fail instead)
set -euo pipefail

DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNS:-16}
THREADS=${BENCH_THREADS:-1}
WORKERS=${BENCH_WORKERS:-2}
PROFILE=${BENCH_PROFILE:-release}

die() { echo "metadata.sh: $*" >&2; exit 1; }
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

[[ -f Cargo.toml && -d src/metadata ]] || die "run from the repository root"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "BENCH_DURATION=$DURATION is not a positive integer"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_CONNS=$CONNS is not a positive integer"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "BENCH_THREADS=$THREADS is not a positive integer"
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "BENCH_WORKERS=$WORKERS is not a positive integer"
[[ $PROFILE == release || $PROFILE == debug ]] || die "BENCH_PROFILE must be release or debug"

missing=()
for tool in wrk curl jq; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
    [[ ${BENCH_NO_APT:-0} == 1 ]] && die "missing: ${missing[*]} (BENCH_NO_APT=1)"
    [[ $EUID -eq 0 ]] || die "missing: ${missing[*]}; install them (apt-get install ${missing[*]})"
    log "installing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 \
        || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; } \
        || die "apt-get install ${missing[*]} failed"
fi

BIN=target/$PROFILE/appc-metadata
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
    log "building appc-metadata ($PROFILE)"
    if [[ $PROFILE == release ]]; then
        cargo build --release --locked --bin appc-metadata >&2
    else
        cargo build --locked --bin appc-metadata >&2
    fi
fi
[[ -x $BIN ]] || die "$BIN is missing (build it, or unset BENCH_NO_BUILD)"

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/mds-bench.XXXXXX")
SVC_PID=
cleanup() {
    [[ -n $SVC_PID ]] && kill "$SVC_PID" 2>/dev/null && wait "$SVC_PID" 2>/dev/null
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

# The service on a free loopback port; its start-up line names the port.
"$BIN" --state-dir "$SCRATCH/state" --socket "$SCRATCH/mds.sock" --listen 127.0.0.1:0 --threads "$WORKERS" \
    2>"$SCRATCH/service.log" &
SVC_PID=$!
for _ in $(seq 100); do
    grep -q 'serving pods on' "$SCRATCH/service.log" && break
    kill -0 "$SVC_PID" 2>/dev/null || die "appc-metadata exited: $(cat "$SCRATCH/service.log")"
    sleep 0.1
done
ADDR=$(sed -n 's/.*serving pods on \([^ ]*\).*/\1/p' "$SCRATCH/service.log" | head -1)
[[ -n $ADDR ]] || die "no address in: $(cat "$SCRATCH/service.log")"

# One pod, known by a token and by 127.0.0.1 (the bench's source address).
UUID=$(cat /proc/sys/kernel/random/uuid)
TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
ID="sha512-$(head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \n')"
IMAGE='{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/bench","annotations":[{"name":"created","value":"2024-01-02T03:04:05Z"},{"name":"lorem","value":"ipsum"}]}'
jq -n --arg id "$ID" --arg image "$IMAGE" --arg token "$TOKEN" '{
  manifest: {acKind: "PodManifest", acVersion: "0.8.11",
             apps: [{name: "web", image: {name: "example.com/bench", id: $id},
                     annotations: [{name: "lorem", value: "pod"}]}],
             annotations: [{name: "owner", value: "bench"}]},
  apps: {web: {imageId: $id, imageManifest: $image}},
  addresses: ["127.0.0.1"],
  token: $token
}' >"$SCRATCH/registration.json"
code=$(curl -s -o "$SCRATCH/register.out" -w '%{http_code}' --unix-socket "$SCRATCH/mds.sock" \
    -X PUT -H 'Content-Type: application/json' --data-binary @"$SCRATCH/registration.json" \
    "http://mds/v1/pods/$UUID")
[[ $code == 204 ]] || die "registration answered $code: $(cat "$SCRATCH/register.out")"
got=$(curl -s "http://$ADDR/$TOKEN/acMetadata/v1/pod/uuid")
[[ $got == "$UUID" ]] || die "pod/uuid answered ${got@Q}, expected $UUID"

log "load: $(cut -d' ' -f1-3 /proc/loadavg) before; $(nproc) CPUs; wrk -t$THREADS -c$CONNS -d${DURATION}s; service --threads $WORKERS"

# wrk's --latency table: "99%    1.23ms" (units us, ms or s).
to_ms() {
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

printf '\n%-40s %12s %10s %10s %10s %8s\n' "endpoint (GET)" "req/s" "p50 ms" "p99 ms" "max ms" "errors"
FAILED=0
bench() {
    local label=$1 url=$2 out rps p50 p99 max errors
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -H 'Metadata-Flavor: AppContainer' "$url")
    rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    max=$(to_ms "$(awk '$1 == "Latency" { print $4 }' <<<"$out")")
    errors=$(awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { n += 1 } END { print n + 0 }' <<<"$out")
    printf '%-40s %12s %10s %10s %10s %8s\n' "$label" "$rps" "$p50" "$p99" "$max" "$errors"
    awk -v r="$rps" -v p="$p99" 'BEGIN { exit !(r >= 20000 && p < 2) }' || FAILED=1
    [[ $errors == 0 ]] || die "$label: $errors failed requests:\n$out"
}
bench "pod/uuid (token)" "http://$ADDR/$TOKEN/acMetadata/v1/pod/uuid"
bench "pod/uuid (source address)" "http://$ADDR/acMetadata/v1/pod/uuid"
bench "apps/web/annotations (token)" "http://$ADDR/$TOKEN/acMetadata/v1/apps/web/annotations"
bench "pod/manifest (token)" "http://$ADDR/$TOKEN/acMetadata/v1/pod/manifest"

echo
log "load: $(cut -d' ' -f1-3 /proc/loadavg) after"
if ((FAILED)); then
    echo "goal (>= 20000 req/s and p99 < 2 ms): MISS on at least one endpoint"
else
    echo "goal (>= 20000 req/s and p99 < 2 ms): PASS on every endpoint"
fi
