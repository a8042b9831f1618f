#!/usr/bin/env bash
# test_prepare.sh — the engine cache under concurrency and failure: idempotent reuse, 8 concurrent
# prepares (exactly one builds), kill -9 of the builder then recovery, a silent lock of another host
# taken over, a damaged rank file named by the check and rebuilt by `prepare --verify full`.
# usage: test_prepare.sh SHARDSERVE GEN_CHECKPOINT FIXTURES
set -uo pipefail
BIN=$1
GEN=$2
FIX=$3
W=$(mktemp -d /tmp/ss-prepare-test.XXXXXX)
fails=0
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

"$GEN" --shape tiny --layers 4 --out "$W/ck" >/dev/null 2>&1 || { echo "gen_checkpoint failed"; exit 1; }

# 1. Build, then reuse instantly with the manifest untouched.
C=$W/c1
DIR=$("$BIN" prepare --quiet --model "$W/ck" --tp 2 --pp 2 --cache "$C" 2>"$W/first.err")
[ -n "$DIR" ] && [ -f "$DIR/manifest.json" ] || { fail "first prepare"; cat "$W/first.err"; }
M1=$(stat -c %Y.%i "$DIR/manifest.json")
DIR2=$("$BIN" prepare --quiet --model "$W/ck" --tp 2 --pp 2 --cache "$C" 2>"$W/second.err")
if [ "$DIR" = "$DIR2" ] && [ "$(stat -c %Y.%i "$DIR/manifest.json")" = "$M1" ] && grep -q "reused" "$W/second.err" &&
   ! grep -q "building" "$W/second.err"; then
    ok "idempotent: the second prepare reuses the engine"
else
    fail "idempotent"; cat "$W/second.err"
fi
for r in 0 1 2 3; do [ -f "$DIR/rank-0000$r.safetensors" ] || fail "rank $r file missing"; done
[ -f "$DIR/config.json" ] && [ -f "$DIR/generation_config.json" ] || fail "config files not copied"
ls -a "$(dirname "$DIR")" | grep -q '\.tmp\.' && fail "temporary folder left behind"
"$BIN" prepare --check "$DIR" >/dev/null 2>&1 || fail "--check of a fresh engine"

# 2. Editing the source folder gives a new engine key (never a stale engine).
cp -r "$W/ck" "$W/ck2"
sed -i 's/"rms_norm_eps": 1e-05/"rms_norm_eps": 1e-06/' "$W/ck2/config.json"
D_A=$("$BIN" prepare --quiet --model "$W/ck" --cache "$W/ckey" 2>/dev/null)
mv "$W/ck" "$W/ck.orig" && mv "$W/ck2" "$W/ck"
D_B=$("$BIN" prepare --quiet --model "$W/ck" --cache "$W/ckey" 2>/dev/null)
rm -rf "$W/ck" && mv "$W/ck.orig" "$W/ck"
[ -n "$D_A" ] && [ -n "$D_B" ] && [ "$D_A" != "$D_B" ] && ok "edited folder -> new key" || fail "edited folder kept its key"

# 3. Eight processes at once on one cache: exactly one builds, all print the same valid engine.
C=$W/c8
for i in $(seq 8); do
    "$BIN" prepare --quiet --model "$W/ck" --tp 2 --pp 2 --cache "$C" --throttle-mbps 0.05 \
        >"$W/p$i.out" 2>"$W/p$i.err" &
    PIDS+=($!)
done
rcs=0
for p in "${PIDS[@]}"; do wait "$p" || rcs=$((rcs + 1)); done
PIDS=()
builders=$(cat "$W"/p*.err | grep -c "building engine")
dirs=$(sort -u "$W"/p*.out | wc -l)
if [ $rcs -eq 0 ] && [ "$builders" -eq 1 ] && [ "$dirs" -eq 1 ] && "$BIN" prepare --check "$(cat "$W/p1.out")" >/dev/null 2>&1; then
    ok "8 concurrent prepares: one builder, one valid engine"
else
    fail "8 concurrent prepares: rc failures $rcs, builders $builders, distinct dirs $dirs"; cat "$W"/p*.err | head -40
fi
grep -q "waiting" "$W"/p*.err || fail "waiters printed no status"
[ -e "$C/engines/local--ck" ] && ls "$C"/engines/local--ck/*/ | grep -q '\.lock$' && fail "lock left behind"

# 4. kill -9 of the builder mid-way; a new prepare takes the lock over and finishes.
C=$W/ckill
"$BIN" prepare --quiet --model "$W/ck" --tp 2 --cache "$C" --throttle-mbps 0.02 >"$W/k.out" 2>"$W/k.err" &
KP=$!
PIDS+=($KP)
# (up to 60 s, a bound on a hang only; its lock and temporary folder exist once it says so)
for _ in $(seq 1200); do grep -q "building engine" "$W/k.err" && break; sleep 0.05; done
sleep 0.5
kill -9 $KP
wait $KP 2>/dev/null
PIDS=()
LOCK=$(ls "$C"/engines/local--ck/*/tp2-pp1-bf16.lock 2>/dev/null)
TMPD=$(ls -d "$C"/engines/local--ck/*/.tp2-pp1-bf16.tmp.* 2>/dev/null)
[ -n "$LOCK" ] && [ -n "$TMPD" ] || fail "kill -9 did not leave a lock and a partial build (lock '$LOCK', tmp '$TMPD')"
[ -e "$(dirname "$LOCK")/tp2-pp1-bf16" ] && fail "a partial engine is visible after kill -9"
DIR=$(timeout 60 "$BIN" prepare --quiet --model "$W/ck" --tp 2 --cache "$C" 2>"$W/k2.err")
if [ -n "$DIR" ] && grep -q "taking the lock over" "$W/k2.err" && "$BIN" prepare --check "$DIR" >/dev/null 2>&1 &&
   [ -z "$(ls -d "$C"/engines/local--ck/*/.tp2-pp1-bf16.tmp.* 2>/dev/null)" ]; then
    ok "kill -9 of the builder: the next prepare recovers"
else
    fail "recovery after kill -9"; cat "$W/k2.err"
fi

# 5. A lock of another host whose heartbeat stopped is taken over after --lock-stale-s.
C=$W/cstale
D=$(dirname "$(dirname "$DIR")")
KEYDIR=$C/engines/$(basename "$D")/$(basename "$(dirname "$DIR")")
mkdir -p "$KEYDIR"
printf 'host=some-other-pod\npid=12345\nstart=1\n' >"$KEYDIR/tp2-pp1-bf16.lock"
touch -d '-10 seconds' "$KEYDIR/tp2-pp1-bf16.lock"
DIR=$(timeout 60 "$BIN" prepare --quiet --model "$W/ck" --tp 2 --cache "$C" --lock-stale-s 3 2>"$W/s.err")
if [ -n "$DIR" ] && grep -q "silent for" "$W/s.err"; then
    ok "stale lock of another host taken over"
else
    fail "stale lock takeover"; cat "$W/s.err"
fi

# 5b. A limit near the 2 s heartbeat would take live builders over: refused (exit 2).
"$BIN" prepare --quiet --model "$W/ck" --cache "$C" --lock-stale-s 1 >/dev/null 2>"$W/s1.err"
RC=$?
if [ $RC -eq 2 ] && grep -q "lock-stale-s 1: must be in 3..86400" "$W/s1.err"; then
    ok "--lock-stale-s below 3 s refused"
else
    fail "--lock-stale-s 1 gave rc $RC"; cat "$W/s1.err"
fi

# 6. One damaged byte in a rank file: the full check names it; prepare --verify full rebuilds.
DIR=$("$BIN" prepare --quiet --model "$W/ck" --tp 2 --pp 2 --cache "$W/c1" 2>/dev/null)
F=$DIR/rank-00001.safetensors
SZ=$(stat -c %s "$F")
printf '\x5a' | dd of="$F" bs=1 seek=$((SZ - 7)) conv=notrunc status=none
"$BIN" prepare --check "$DIR" >"$W/chk.out" 2>"$W/chk.err"
RC=$?
if [ $RC -eq 3 ] && grep -q "rank-00001.safetensors" "$W/chk.err" && grep -q "damaged" "$W/chk.err"; then
    ok "damaged rank file named by the check"
else
    fail "damaged rank file (rc $RC)"; cat "$W/chk.err"
fi
"$BIN" prepare --quiet --model "$W/ck" --tp 2 --pp 2 --cache "$W/c1" --verify full >/dev/null 2>"$W/rb.err"
if grep -q "rebuilt" "$W/rb.err" && "$BIN" prepare --check "$DIR" >/dev/null 2>&1; then
    ok "prepare --verify full rebuilds a damaged engine"
else
    fail "rebuild of a damaged engine"; cat "$W/rb.err"
fi
truncate -s -1 "$DIR/rank-00002.safetensors"
"$BIN" prepare --quiet --model "$W/ck" --tp 2 --pp 2 --cache "$W/c1" >/dev/null 2>"$W/rb2.err"
grep -q "rank-00002.safetensors" "$W/rb2.err" && "$BIN" prepare --check "$DIR" >/dev/null 2>&1 &&
    ok "a truncated rank file is caught by the size check and rebuilt" || { fail "size check"; cat "$W/rb2.err"; }
# An engine's config.json edited in place (its size unchanged): a plain prepare (--verify sizes) checks the small
# files' digests too, and rebuilds, as every rank's load would refuse it.
chmod u+w "$DIR/config.json"
sed -i 's/"rms_norm_eps": 1e-05/"rms_norm_eps": 1e-04/' "$DIR/config.json"
"$BIN" prepare --quiet --model "$W/ck" --tp 2 --pp 2 --cache "$W/c1" >/dev/null 2>"$W/rb3.err"
grep -q "config.json" "$W/rb3.err" && grep -q '"rms_norm_eps": 1e-05' "$DIR/config.json" &&
    "$BIN" prepare --check "$DIR" >/dev/null 2>&1 &&
    ok "an edited config.json in the engine is caught by a plain prepare and rebuilt" ||
    { fail "config digest at reuse"; cat "$W/rb3.err"; }

# 6b. Damaged again, two --verify full at once: the second waits for the first's rebuild (the damaged engine has the
# right sizes: it used to fail at once with "damaged engine file" while the first was rebuilding).
SZ=$(stat -c %s "$F")
printf '\x5a' | dd of="$F" bs=1 seek=$((SZ - 7)) conv=notrunc status=none
"$BIN" prepare --quiet --model "$W/ck" --tp 2 --pp 2 --cache "$W/c1" --verify full --throttle-mbps 0.02 \
    >/dev/null 2>"$W/vf1.err" &
VF1=$!
sleep 1
"$BIN" prepare --quiet --model "$W/ck" --tp 2 --pp 2 --cache "$W/c1" --verify full >/dev/null 2>"$W/vf2.err"
RC=$?
wait $VF1
RC1=$?
if [ $RC -eq 0 ] && [ $RC1 -eq 0 ] && "$BIN" prepare --check "$DIR" >/dev/null 2>&1; then
    ok "a --verify full waiter waits for the rebuild of a damaged engine"
else
    fail "--verify full waiter (rc $RC, builder rc $RC1)"; cat "$W/vf2.err"
fi

# 7. Bad inputs: exit codes of DESIGN.md §2.
"$BIN" prepare --quiet --model "$W/nope" --cache "$W/cb" >/dev/null 2>"$W/b1.err"
[ $? -eq 3 ] && grep -q "nope" "$W/b1.err" || fail "missing folder should exit 3"
"$BIN" prepare --quiet --model "$W/ck" --tp 3 --cache "$W/cb" >/dev/null 2>"$W/b2.err"
[ $? -eq 2 ] && grep -q "tp 3" "$W/b2.err" || { fail "tp 3 of 4 heads should exit 2"; cat "$W/b2.err"; }
"$BIN" prepare --quiet --model "$W/ck" --dtype int8 --cache "$W/cb" >/dev/null 2>&1
[ $? -eq 2 ] || fail "bad dtype should exit 2"
mkdir -p "$W/empty"
"$BIN" prepare --quiet --model "$W/empty" --cache "$W/cb" >/dev/null 2>"$W/b3.err"
[ $? -eq 3 ] || { fail "a folder without a checkpoint should exit 3"; cat "$W/b3.err"; }
ok "bad inputs"

# 8. fp32 engine of a real fixture with tied embeddings split over two stages.
DIR=$("$BIN" prepare --quiet --model "$FIX/models/mistral-tied-mqa" --pp 2 --dtype fp32 --cache "$W/cf" 2>"$W/f.err")
[ -n "$DIR" ] && "$BIN" prepare --check "$DIR" >/dev/null 2>&1 && grep -q '"dtype":[[:space:]]*"fp32"' "$DIR/manifest.json" &&
    ok "fp32, tied, pp 2" || { fail "fp32 tied pp2"; cat "$W/f.err"; }

[ $fails -eq 0 ] && echo "all prepare tests passed" || echo "$fails prepare test(s) failed"
exit $((fails > 0))
