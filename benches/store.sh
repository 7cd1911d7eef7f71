#!/usr/bin/env bash
# Store benchmarks: import vs `gzip -dc | sha512sum`, dedup growth of a 90 %-shared second image,
# and `image export` vs `cat`. Every number is a ratio against a peer measured in the same run,
# alternately, on the same cached input. See benches/README.md.
#
# Run as root from the repository root:   bash benches/store.sh
# Environment:
#   BENCH_SIZE_MIB  uncompressed payload of the test image (file contents), MiB   (500)
#   BENCH_FILES     number of regular files in the test image                     (20000)
#   BENCH_RUNS      timed runs of each command (the median is reported; export: >= 5) (3)
#   BENCH_TMP       parent of the scratch directory (its filesystem is measured)  (/var/tmp)
#   BENCH_SEED      seed of the content generator                                 (1)
#   BENCH_NO_BUILD  1: skip `cargo build`, use the existing target/release/appcctl
#   BENCH_KEEP      1: keep the scratch directory (printed at the end) for profiling
#   BENCH_LOOP_EXT4 1: put the scratch data on a private journaled ext4 (a sparse file on a loop
#                   device inside the scratch directory), away from other work on BENCH_TMP
set -euo pipefail

SIZE_MIB=${BENCH_SIZE_MIB:-500}
FILES=${BENCH_FILES:-20000}
RUNS=${BENCH_RUNS:-3}
TMP_PARENT=${BENCH_TMP:-/var/tmp}
SEED=${BENCH_SEED:-1}

die() { echo "store.sh: $*" >&2; exit 1; }
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

[[ $EUID -eq 0 ]] || die "run as root (imports chown files)"
[[ -f Cargo.toml && -d src/store ]] || die "run from the repository root"
for v in SIZE_MIB FILES RUNS SEED; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_${v}=${!v} is not a positive integer"
done
for tool in tar gzip sha512sum perl openssl du awk; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
    log "building appcctl (release)"
    cargo build --release --locked --bin appcctl >&2
fi
APPCCTL=$PWD/target/release/appcctl
[[ -x $APPCCTL ]] || die "$APPCCTL missing"
# The tree it was (or, with BENCH_NO_BUILD, may have been) built from.
REVISION=$(git describe --always --dirty 2>/dev/null || echo unknown)
BUILT=$(date -r "$APPCCTL" '+%F %T')

mkdir -p "$TMP_PARENT"
SCRATCH=$(mktemp -d "$TMP_PARENT/appc-bench.XXXXXX")
T=$SCRATCH
cleanup() {
    if mountpoint -q "$SCRATCH/fs" 2>/dev/null; then
        if [[ ${BENCH_KEEP:-0} == 1 ]]; then
            echo "scratch filesystem left mounted: $SCRATCH/fs (umount it, then remove $SCRATCH)" >&2
            return
        fi
        umount "$SCRATCH/fs" || { echo "store.sh: cannot unmount $SCRATCH/fs" >&2; return; }
    fi
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "scratch directory kept: $SCRATCH" >&2
    else
        rm -rf "$SCRATCH"
    fi
}
trap cleanup EXIT

# Optionally a private journaled ext4. On ext4 *without* a journal (as on some VMs), inode
# allocation skips inodes deleted in the last ~30 s one by one (ext4 recently_deleted()), so
# every file created costs more while anything on the same filesystem deletes many files: other
# work there then shows up in the import time. A filesystem of our own avoids that.
if [[ ${BENCH_LOOP_EXT4:-0} == 1 ]]; then
    command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is needed for BENCH_LOOP_EXT4=1"
    truncate -s "$((SIZE_MIB * 14 + 2048))M" "$SCRATCH/fs.img"
    mkfs.ext4 -q -F "$SCRATCH/fs.img"
    mkdir "$SCRATCH/fs"
    mount -o loop "$SCRATCH/fs.img" "$SCRATCH/fs" || die "cannot loop-mount an ext4 (no loop devices?)"
    T=$SCRATCH/fs
fi

# ---------------------------------------------------------------------------------------------
# Test data. A deterministic generator (perl's own PRNG is portable since 5.20; the random
# bytes come from AES-CTR over zeros with a seed-derived IV): file sizes are fixed by
# (size, count, seed), and so is the content, hence the image ID.
#
# Content: 95 % "text" cut from a pool of random words (3000 words of 1-4 syllables), 5 %
# random bytes, in 0.5-8.5 KiB chunks: gzip -6 gets ~2.6x (the ACI ~2.7x), about what it gets on a real
# /usr/lib, and it inflates at the same speed (measured when the generator was written).
# Sizes: large files log-uniform in [64 KiB, 6 MiB] take ~2/3 of the bytes, the rest are
# small files uniform in [1, 16 KiB] (scaled down when the count does not fit the size).
# ---------------------------------------------------------------------------------------------
GEN=$T/gen.pl
cat >"$GEN" <<'PERL'
use strict;
use warnings;
use File::Path qw(make_path);

# usage: gen.pl create ROOT BYTES NFILES SEED   (writes ROOT/rootfs/... and prints "size path")
#        gen.pl rewrite ROOT SEED < list         (new content, same size, for "size path" lines)
my ($mode, $root, @rest) = @ARGV;
my $seed = $mode eq 'create' ? $rest[2] : $rest[0];
srand($seed);

my @syl = qw(ba be bi bo bu ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu
             ra re ri ro ru sa se si so su ta te ti to tu _ . / ; = ( ) { } 0 1 2 x);
my @words;
for (1 .. 300) {
    my $w = '';
    $w .= $syl[int rand @syl] for 1 .. (1 + int rand 4);
    push @words, $w;
}
my $pool = '';
$pool .= $words[int rand @words] . (rand() < 0.1 ? "\n" : ' ') while length($pool) < (16 << 20);

my $iv = sprintf '%032x', $seed;
open(my $rnd, '-|', "openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv $iv -in /dev/zero 2>/dev/null")
    or die "openssl: $!";
binmode $rnd;

sub content {
    my ($fh, $n) = @_;
    while ($n > 0) {
        my $len = 512 + int rand 8192;
        $len = $n if $len > $n;
        if (rand() < 0.05) {
            my $got = read($rnd, my $b, $len);
            die "short read from openssl" unless defined $got && $got == $len;
            print $fh $b or die "write: $!";
        } else {
            print $fh substr($pool, int rand(length($pool) - $len), $len) or die "write: $!";
        }
        $n -= $len;
    }
}

sub write_file {
    my ($path, $size) = @_;
    open(my $fh, '>', $path) or die "$path: $!";
    binmode $fh;
    content($fh, $size);
    close $fh or die "$path: $!";
}

if ($mode eq 'create') {
    my ($bytes, $n) = @rest;
    my $small_avg = 8.5 * 1024;
    my $scale = 1;
    $scale = ($bytes / 3) / ($n * $small_avg) if $n * $small_avg > $bytes / 3;
    my @large;
    my $large_sum = 0;
    while (@large < $n - 1 && $large_sum + ($n - @large) * $small_avg * $scale < $bytes) {
        my $s = int(exp(log(64 << 10) + rand() * (log(6 << 20) - log(64 << 10))));
        push @large, $s;
        $large_sum += $s;
    }
    my @sizes;
    push @sizes, int((1024 + rand(15 * 1024)) * $scale) || 1 for 1 .. ($n - @large);
    my $small_sum = 0;
    $small_sum += $_ for @sizes;
    if (@large) {    # the last large file takes up the difference: the total is exact
        my $fix = $bytes - $small_sum - ($large_sum - $large[-1]);
        $large[-1] = $fix > 0 ? $fix : 1;
    }
    push @sizes, @large;
    for (my $i = $#sizes; $i > 0; $i--) {    # Fisher-Yates: large files anywhere
        my $j = int rand($i + 1);
        @sizes[$i, $j] = @sizes[$j, $i];
    }
    for my $i (0 .. $#sizes) {
        my $dir = sprintf 'rootfs/usr/lib/d%03d', int($i / 100);
        make_path("$root/$dir") unless -d "$root/$dir";
        my $path = sprintf '%s/f%05d%s', $dir, $i, ($i % 7 == 0 ? '.so' : '.dat');
        write_file("$root/$path", $sizes[$i]);
        chmod(($i % 7 == 0 ? 0755 : 0644), "$root/$path") or die "chmod: $!";
        print "$sizes[$i] $path\n";
    }
} elsif ($mode eq 'rewrite') {
    while (my $line = <STDIN>) {
        chomp $line;
        my ($size, $path) = split / /, $line, 2;
        write_file("$root/$path", $size);
    }
} else {
    die "unknown mode $mode";
}
PERL

MANIFEST='{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/bench"}'
TAR_OPTS=(--format=gnu --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000)

# make_aci LAYOUT OUT.aci: a gzip (-6, no name/time) ACI of LAYOUT's manifest and rootfs.
make_aci() {
    tar "${TAR_OPTS[@]}" -C "$1" -cf - manifest rootfs | gzip -6 -n >"$2"
}

BYTES=$((SIZE_MIB << 20))
log "generating image A: $FILES files, $SIZE_MIB MiB of content"
mkdir -p "$T/layout-a"
printf '%s\n' "$MANIFEST" >"$T/layout-a/manifest"
perl "$GEN" create "$T/layout-a" "$BYTES" "$FILES" "$SEED" >"$T/files-a.list"
[[ $(wc -l <"$T/files-a.list") -eq $FILES ]] || die "generator wrote the wrong number of files"
make_aci "$T/layout-a" "$T/a.aci"

log "generating image B: a copy of A with 10 % of its files (every 10th by size) rewritten"
cp -a "$T/layout-a" "$T/layout-b"
sort -n -k1,1 -k2,2 "$T/files-a.list" | awk 'NR % 10 == 5' >"$T/files-b.changed"
perl "$GEN" rewrite "$T/layout-b" "$((SEED + 1000003))" <"$T/files-b.changed"
make_aci "$T/layout-b" "$T/b.aci"

ACI_SIZE=$(stat -c %s "$T/a.aci")
TAR_SIZE=$(gzip -dc "$T/a.aci" | wc -c)
CHANGED_FILES=$(wc -l <"$T/files-b.changed")
CHANGED_BYTES=$(awk '{s += $1} END {print s + 0}' "$T/files-b.changed")
log "a.aci: $ACI_SIZE bytes gzip, $TAR_SIZE bytes tar; b.aci rewrites $CHANGED_FILES files, $CHANGED_BYTES bytes"

# ---------------------------------------------------------------------------------------------
# Timing helpers: bash's `time` keyword gives wall and the CPU (user+sys) of the command and
# all its children, pipelines included.
# ---------------------------------------------------------------------------------------------
# Machine-wide busy CPU time (user + nice + system) in clock ticks, from /proc/stat: what other
# processes used during a run is this difference minus the run's own CPU time.
CLK_TCK=$(getconf CLK_TCK)
cpu_busy() {
    local l
    read -r -a l </proc/stat
    echo $((l[1] + l[2] + l[3]))
}

# timed NAME CMD...: runs CMD (stdout to $T/NAME.out, stderr to $T/NAME.err), appends
# "wall cpu user sys others" to $T/NAME.times (others: CPUs that other processes kept busy
# meanwhile, on average); fails (with CMD's stderr) if CMD fails.
timed() {
    local name=$1 rc=0 b0 b1
    shift
    local TIMEFORMAT='%3R %3U %3S'
    b0=$(cpu_busy)
    { time "$@" >"$T/$name.out" 2>"$T/$name.err"; } 2>"$T/$name.time" || rc=$?
    b1=$(cpu_busy)
    if [[ $rc -ne 0 ]]; then
        cat "$T/$name.err" >&2
        die "$name failed (exit $rc): $*"
    fi
    awk -v busy="$((b1 - b0))" -v hz="$CLK_TCK" '{
        others = busy / hz - ($2 + $3); if (others < 0) others = 0
        printf "%s %.3f %s %s %.2f\n", $1, $2 + $3, $2, $3, ($1 > 0 ? others / $1 : 0)
    }' "$T/$name.time" >>"$T/$name.times"
}

# median NAME COLUMN: median of column 1 (wall), 2 (cpu), 3 (user), 4 (sys) or 5 (others).
median() {
    sort -n "-k$2,$2" "$T/$1.times" | awk -v c="$2" '{v[NR] = $c}
        END {if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }

# Settle the disk between runs: the writeback of one run must not land in the next. Stores are
# not removed between runs (each import gets a new one, all are removed at exit): on ext4
# without a journal, a mass delete makes file creation slower for the next ~30 s (see above).
settle() { sync; }

# ---------------------------------------------------------------------------------------------
# 1. Import vs `gzip -dc | sha512sum`, alternately, each on the cached a.aci.
# ---------------------------------------------------------------------------------------------
baseline() { gzip -dc "$T/a.aci" | sha512sum; }
import_a() { "$APPCCTL" --dir "$T/store-$1" --insecure-options=image fetch "$T/a.aci"; }

log "load before timing: $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
cat "$T/a.aci" >/dev/null    # in the page cache for both
for ((i = 1; i <= RUNS; i++)); do
    settle
    timed baseline baseline
    settle
    timed import import_a "$i"
    log "run $i/$RUNS: baseline $(tail -n1 "$T/baseline.times" | cut -d' ' -f1) s, import $(tail -n1 "$T/import.times" | cut -d' ' -f1) s"
done
ID=$(tr -d '\n' <"$T/import.out")
[[ $ID =~ ^sha512-[0-9a-f]{128}$ ]] || die "fetch printed no image ID: $ID"
[[ $ID == "sha512-$(cut -d' ' -f1 "$T/baseline.out")" ]] \
    || die "image ID $ID is not the sha512 of the decompressed archive"

# ---------------------------------------------------------------------------------------------
# 2. Export vs `cat` of an equal-sized file (a copy of the export), and vs `cat` + fsync:
#    export fsyncs its output before renaming it into place, plain `cat` does not. And vs
#    `tar -c` of A's layout + fsync: reading 20k small files costs more than one big one.
# ---------------------------------------------------------------------------------------------
log "export: checking that the export hashes to the ID"
STORE=$T/store-$RUNS
"$APPCCTL" --dir "$STORE" image export "$ID" "$T/export-check.tar" >/dev/null
[[ "sha512-$(sha512sum "$T/export-check.tar" | cut -d' ' -f1)" == "$ID" ]] \
    || die "image export of $ID does not hash to its ID"
cp "$T/export-check.tar" "$T/cat-src.tar"
rm -f "$T/export-check.tar"
export_a() { "$APPCCTL" --dir "$STORE" image export "$ID" "$T/export.tar"; }
cat_plain() { cat "$T/cat-src.tar" >"$T/cat.tar"; }
cat_fsync() { cat "$T/cat-src.tar" >"$T/cat.tar" && sync "$T/cat.tar"; }
# The same job as export, by GNU tar: read the 20k files of A's layout into one tar, then fsync.
tar_fsync() { tar "${TAR_OPTS[@]}" -C "$T/layout-a" -cf "$T/cat.tar" manifest rootfs && sync "$T/cat.tar"; }
EXPORT_RUNS=$((RUNS > 5 ? RUNS : 5))    # export runs take ~1 s: more of them steady the median
for ((i = 1; i <= EXPORT_RUNS; i++)); do
    rm -f "$T/export.tar" "$T/cat.tar"
    settle
    timed export export_a
    rm -f "$T/cat.tar"
    settle
    timed cat cat_plain
    rm -f "$T/cat.tar"
    settle
    timed catsync cat_fsync
    rm -f "$T/cat.tar"
    settle
    timed tarc tar_fsync
    log "run $i/$EXPORT_RUNS: export $(tail -n1 "$T/export.times" | cut -d' ' -f1) s, cat $(tail -n1 "$T/cat.times" | cut -d' ' -f1) s, cat+fsync $(tail -n1 "$T/catsync.times" | cut -d' ' -f1) s, tar -c+fsync $(tail -n1 "$T/tarc.times" | cut -d' ' -f1) s"
done
rm -f "$T/export.tar" "$T/cat.tar" "$T/cat-src.tar"
settle

# ---------------------------------------------------------------------------------------------
# 3. Dedup: store growth from image B (90 % of A's files) over growth from A.
#    du counts an inode once per invocation, however many hard links it has (checked here).
# ---------------------------------------------------------------------------------------------
mkdir "$T/du-check"
head -c $((4 << 20)) /dev/zero >"$T/du-check/one"
ln "$T/du-check/one" "$T/du-check/two"
DU_CHECK=$(du -s --block-size=1 "$T/du-check" | cut -f1)
((DU_CHECK < (6 << 20))) || die "du counts hard links twice here ($DU_CHECK bytes for one 4 MiB inode)"
rm -rf "$T/du-check"

store_du() { sync; du -s --block-size=1 "$T/dedup-store" | cut -f1; }
"$APPCCTL" --dir "$T/dedup-store" image list >/dev/null    # the empty store: index, dirs
DU0=$(store_du)
log "dedup: importing A"
"$APPCCTL" --dir "$T/dedup-store" --insecure-options=image fetch "$T/a.aci" >/dev/null 2>"$T/fetch.err" \
    || { cat "$T/fetch.err" >&2; die "import of a.aci failed"; }
DU_A=$(store_du)
log "dedup: importing B"
ID_B=$("$APPCCTL" --dir "$T/dedup-store" --insecure-options=image fetch "$T/b.aci" 2>"$T/fetch.err") \
    || { cat "$T/fetch.err" >&2; die "import of b.aci failed"; }
DU_B=$(store_du)
[[ $ID_B != "$ID" ]] || die "image B has the same ID as A: the generator did not change it"
GROWTH_A=$((DU_A - DU0))
GROWTH_B=$((DU_B - DU_A))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------------
IMP_W=$(median import 1) BASE_W=$(median baseline 1)
IMP_C=$(median import 2) BASE_C=$(median baseline 2)
IMP_U=$(median import 3) IMP_S=$(median import 4)
EXP_W=$(median export 1) CAT_W=$(median cat 1) CATS_W=$(median catsync 1)
EXP_C=$(median export 2) CAT_C=$(median cat 2) CATS_C=$(median catsync 2)
TARC_W=$(median tarc 1) TARC_C=$(median tarc 2)
LABEL_IMPORT="import $SIZE_MIB MiB/$FILES files (gzip)"

row() { printf '%-40s %-12s %-12s %-7s %s\n' "$@"; }
echo
echo "== appc store benchmarks (medians of $RUNS import runs, $EXPORT_RUNS export runs; ratio = ours / peer) =="
row benchmark ours peer ratio goal
row "$LABEL_IMPORT" "$IMP_W s" "$BASE_W s" "$(ratio "$IMP_W" "$BASE_W")" "<= 1.3"
row "store growth, 2nd image (90% shared)" "$(mib "$GROWTH_B")" "$(mib "$GROWTH_A")" "$(ratio "$GROWTH_B" "$GROWTH_A")" "<= 0.15"
row "image export vs cat (same size)" "$EXP_W s" "$CAT_W s" "$(ratio "$EXP_W" "$CAT_W")" "-"
row "image export vs cat + fsync" "$EXP_W s" "$CATS_W s" "$(ratio "$EXP_W" "$CATS_W")" "-"
row "image export vs tar -c + fsync" "$EXP_W s" "$TARC_W s" "$(ratio "$EXP_W" "$TARC_W")" "-"
echo
echo "CPU time (user+sys, medians; less sensitive to other load than wall time):"
row "import vs gzip -dc | sha512sum" "$IMP_C s" "$BASE_C s" "$(ratio "$IMP_C" "$BASE_C")" "import: user $IMP_U s, sys $IMP_S s"
row "image export vs cat" "$EXP_C s" "$CAT_C s" "$(ratio "$EXP_C" "$CAT_C")" ""
row "image export vs tar -c + fsync" "$EXP_C s" "$TARC_C s" "$(ratio "$EXP_C" "$TARC_C")" ""
echo
echo "peers: import = 'gzip -dc a.aci | sha512sum'; growth = growth from image A itself;"
echo "       export = 'cat' of an equal-sized file (and 'cat; sync FILE': export fsyncs), and"
echo "                'tar -c' of image A's layout directory then 'sync FILE' (the same job: 20k files in)"
OTHERS=$(cat "$T"/{baseline,import,export,cat,catsync,tarc}.times | awk '{print $5}' | sort -n |
    awk '{v[NR] = $1} END {printf "%.2f", v[int((NR + 1) / 2)]}')
echo "other processes kept $OTHERS of $(nproc) CPUs busy during the timed runs (median; 0 = quiet machine)"
echo
echo "all runs (wall, cpu = user + sys, user, sys: seconds; others: CPUs busy with other work):"
for n in baseline import cat catsync tarc export; do
    printf '  %-9s %s\n' "$n" "$(tr '\n' ';' <"$T/$n.times" | sed 's/;$//; s/;/ | /g')"
done
echo
echo "image A: $(mib "$TAR_SIZE") tar, $(mib "$ACI_SIZE") gzip (ratio $(ratio "$TAR_SIZE" "$ACI_SIZE")), $FILES files, seed $SEED"
echo "image B: $CHANGED_FILES files rewritten ($(mib "$CHANGED_BYTES") of content)"
echo "store: empty $(mib "$DU0"), after A $(mib "$DU_A"), after B $(mib "$DU_B") (du -s, hard links once)"
echo "machine: nproc $(nproc), kernel $(uname -r), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo)," \
    "cpu $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
SCRATCH_DEV=$(df --output=source "$T" | tail -n1 | tr -d " ")
SCRATCH_FS=$(df --output=fstype "$T" | tail -n1 | tr -d " ")
if [[ $SCRATCH_FS == ext4 ]]; then
    if compgen -G "/proc/fs/jbd2/$(basename "$SCRATCH_DEV")-*" >/dev/null; then
        SCRATCH_FS+=", journaled"
    else
        SCRATCH_FS+=", no journal: file creation pays for recent deletes elsewhere on it"
    fi
fi
echo "scratch: $T on $SCRATCH_DEV ($SCRATCH_FS)"
echo "load average (1/5/15 min): before $LOAD_BEFORE, after $LOAD_AFTER"
echo "appcctl: $APPCCTL built $BUILT; tree at start: $REVISION"
