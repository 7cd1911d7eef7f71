#!/usr/bin/env bash
# Fetch benchmark: `appcctl fetch https://…/big.aci` (download over loopback HTTPS, signature
# check, one-pass import) of a signed ~200 MiB ACI, vs the two-step peer doing the same work:
# `curl -o` of the same URL, then `appcctl fetch ./big.aci` of the local copy (signature beside
# it, check and import). Both are measured in the same run, alternately, each into a fresh store;
# the ratio of the medians is the measure (ours / peer; below 1 means the streaming fetch beats
# download-then-import). See benches/README.md.
#
# Run as root from the repository root:   bash benches/fetch.sh
# Environment:
#   BENCH_SIZE_MIB   payload of the image, MiB (incompressible: the ACI is about this size) (200)
#   BENCH_RUNS       timed runs of each side, alternating (3)
#   BENCH_TMP        parent of the scratch directory (/var/tmp)
#   BENCH_NO_BUILD   1: use the existing target/release/appcctl
#   BENCH_KEEP       1: keep the scratch directory
set -euo pipefail

SIZE_MIB=${BENCH_SIZE_MIB:-200}
RUNS=${BENCH_RUNS:-3}
TMP_PARENT=${BENCH_TMP:-/var/tmp}

die() { echo "fetch.sh: $*" >&2; exit 1; }
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

[[ $EUID -eq 0 ]] || die "run as root (imports keep file owners)"
[[ -f Cargo.toml && -d src/fetch ]] || die "run from the repository root"
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || die "BENCH_SIZE_MIB=$SIZE_MIB is not a positive integer"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS=$RUNS is not a positive integer"
[[ -n ${EPOCHREALTIME:-} ]] || die "bash >= 5 is needed (EPOCHREALTIME)"
for tool in curl openssl gpg python3; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install curl openssl gnupg python3)"
done

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
    log "building appcctl (release)"
    cargo build --release --locked --bin appcctl >&2
fi
APPCCTL=$PWD/target/release/appcctl
[[ -x $APPCCTL ]] || die "target/release/appcctl missing"

mkdir -p "$TMP_PARENT"
T=$(mktemp -d "$TMP_PARENT/appc-fetchbench.XXXXXX")
SERVER_PID=
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# The image: SIZE_MIB of random files (so compression cannot shrink the transfer), signed.
# ---------------------------------------------------------------------------------------------
log "generating a ${SIZE_MIB} MiB image"
mkdir -p "$T/layout/rootfs/data" "$T/www" "$T/config"
cat >"$T/layout/manifest" <<JSON
{"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/bench",
 "labels": [{"name": "version", "value": "1"}, {"name": "os", "value": "linux"}]}
JSON
for ((i = 0; i < SIZE_MIB / 4; i++)); do
    openssl rand -out "$T/layout/rootfs/data/f$i" $((4 << 20))
done
"$APPCCTL" image build "$T/layout" "$T/www/big.aci" >/dev/null
ACI_BYTES=$(stat -c %s "$T/www/big.aci")

export GNUPGHOME=$T/gnupg
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key 'bench <bench@example.com>' ed25519 sign never 2>/dev/null
gpg --batch --quiet --armor --export >"$T/pubkey.asc"
gpg --batch --quiet --armor --detach-sign -o "$T/www/big.aci.asc" "$T/www/big.aci"
"$APPCCTL" --config-dir "$T/config" trust --prefix example.com/bench --skip-fingerprint-review \
    "$T/pubkey.asc" >/dev/null

# ---------------------------------------------------------------------------------------------
# A CA, a certificate for example.com, and an HTTPS server on loopback.
# ---------------------------------------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
    -keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=example.com \
    -keyout "$T/srv.key" -out "$T/srv.csr" 2>/dev/null
printf 'subjectAltName=DNS:example.com\n' >"$T/ext"
openssl x509 -req -in "$T/srv.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial -days 2 \
    -extfile "$T/ext" -out "$T/srv.pem" 2>/dev/null
cat >"$T/server.py" <<'PY'
import http.server, os, ssl, sys
root, cert, key = sys.argv[1:4]
class Quiet(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw): super().__init__(*a, directory=root, **kw)
    def log_message(self, *a): pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
PY
coproc SERVER { python3 "$T/server.py" "$T/www" "$T/srv.pem" "$T/srv.key"; }
SERVER_PID=$SERVER_PID
read -r -u "${SERVER[0]}" PORT || die "the HTTPS server did not start"
URL=https://example.com:$PORT/big.aci
export SSL_CERT_FILE=$T/ca.pem APPC_TEST_RESOLVE=example.com=127.0.0.1:$PORT

# ---------------------------------------------------------------------------------------------
# Runs: each side into a fresh store, alternating; page cache warm for both (same file).
# ---------------------------------------------------------------------------------------------
now() { echo "$EPOCHREALTIME"; }
ours=() peer=()
ours_run() {
    rm -rf "$T/store"
    "$APPCCTL" --dir "$T/store" --config-dir "$T/config" fetch "$URL" >"$T/id.ours"
}
peer_run() {
    rm -rf "$T/store" "$T/dl"
    mkdir "$T/dl"
    curl -sS --fail --cacert "$T/ca.pem" --resolve "example.com:$PORT:127.0.0.1" -o "$T/dl/big.aci" "$URL"
    curl -sS --fail --cacert "$T/ca.pem" --resolve "example.com:$PORT:127.0.0.1" -o "$T/dl/big.aci.asc" "$URL.asc"
    "$APPCCTL" --dir "$T/store" --config-dir "$T/config" fetch "$T/dl/big.aci" >"$T/id.peer"
}
log "warm-up"
ours_run
peer_run
cmp -s "$T/id.ours" "$T/id.peer" || die "the two sides imported different images"
for ((r = 1; r <= RUNS; r++)); do
    log "run $r/$RUNS"
    t0=$(now); ours_run; t1=$(now); peer_run; t2=$(now)
    ours+=("$(echo "$t1 - $t0" | bc -l)")
    peer+=("$(echo "$t2 - $t1" | bc -l)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
M_OURS=$(median "${ours[@]}")
M_PEER=$(median "${peer[@]}")
printf '\nfetch of a signed %s MiB ACI (%s bytes) over loopback HTTPS, %s runs, medians\n' \
    "$SIZE_MIB" "$ACI_BYTES" "$RUNS"
printf '%-52s %8.2f s  %7.1f MiB/s\n' "appcctl fetch https://… (download+verify+import)" \
    "$M_OURS" "$(echo "$ACI_BYTES / 1048576 / $M_OURS" | bc -l)"
printf '%-52s %8.2f s  %7.1f MiB/s\n' "curl -o, then appcctl fetch ./big.aci" \
    "$M_PEER" "$(echo "$ACI_BYTES / 1048576 / $M_PEER" | bc -l)"
printf 'ratio ours/peer: %.2f\n' "$(echo "$M_OURS / $M_PEER" | bc -l)"
