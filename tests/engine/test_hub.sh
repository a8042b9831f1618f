#!/usr/bin/env bash
# test_hub.sh — `shardserve prepare` against a mock Hugging Face Hub (mock_hub.py): download, resume
# after a dropped connection and from a partial file, sha256 rejection, 401/403/404 explained, the
# token sent to the Hub host only and never printed, offline reuse.
# usage: test_hub.sh SHARDSERVE FIXTURES
set -uo pipefail
BIN=$1
FIX=$2
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=$FIX/models/llama3-gqa
REPO=test-org/tiny-llama
SHA=5f1c0ffee0ddba11ca7c0de0123456789abcdef0
TOKEN=hf_secretXYZ
W=$(mktemp -d /tmp/ss-hub-test.XXXXXX)
SERVER_PID=
fails=0
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

start_hub() { # mode [token]
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -f "$W/port" "$W/hub.log"
    python3 "$HERE/mock_hub.py" --root "$MODEL" --repo $REPO --mode "$1" --token "${2:-}" \
        --log "$W/hub.log" --portfile "$W/port" &
    SERVER_PID=$!
    # (up to 60 s, a bound on a hang only: Python starts slowly on a loaded machine)
    for _ in $(seq 1200); do [ -f "$W/port" ] && break; sleep 0.05; done
    PORT=$(cat "$W/port")
    export HF_ENDPOINT=http://127.0.0.1:$PORT
}

run() { # name, then prepare args; output in $W/<name>.out/.err, rc in RC
    local name=$1
    shift
    "$BIN" prepare --quiet "$@" >"$W/$name.out" 2>"$W/$name.err"
    RC=$?
    cat "$W/$name.out" "$W/$name.err" >>"$W/all-output"
}

no_auth_to_cdn() {
    if grep '"kind": "cdn"' "$W/hub.log" | grep -q '"auth": true'; then
        fail "$1: the Authorization header reached the CDN host"
    fi
}

# 1. Download with a token (required by the mock), then prepare.
start_hub require_token $TOKEN
C=$W/cache1
HF_TOKEN=$TOKEN run dl --model $REPO --tp 2 --cache "$C"
if [ $RC -eq 0 ] && cmp -s "$MODEL/model.safetensors" "$C/hub/test-org--tiny-llama/$SHA/model.safetensors" &&
   cmp -s "$MODEL/config.json" "$C/hub/test-org--tiny-llama/$SHA/config.json" &&
   grep -q "engines/test-org--tiny-llama/$SHA/tp2-pp1-bf16" "$W/dl.out"; then
    ok "download and prepare"
else
    fail "download and prepare (rc $RC)"; cat "$W/dl.err"
fi
grep -q '"kind": "cdn"' "$W/hub.log" || fail "no request went to the CDN host"
grep '"kind": "hub"' "$W/hub.log" | grep -q '"auth": true' || fail "the token never reached the Hub host"
no_auth_to_cdn "download"
grep -q 'README.md\|consolidated' "$W/hub.log" && fail "files serving does not need were downloaded"
[ -f "$C/hub/test-org--tiny-llama/refs/main" ] || fail "refs/main not recorded"
ls "$C/hub/test-org--tiny-llama/$SHA/" | grep -q incomplete && fail ".incomplete left behind"
"$BIN" prepare --check "$(cat "$W/dl.out")" >/dev/null 2>&1 || fail "engine built from the download does not verify"

# 2. Same cache, again: reused (no file downloads).
: >"$W/hub.log"
HF_TOKEN=$TOKEN run again --model $REPO --tp 2 --cache "$C"
[ $RC -eq 0 ] || fail "second prepare (rc $RC)"
grep -q resolve "$W/hub.log" && fail "second prepare downloaded files again"
ok "second prepare reuses the download"

# 3. Token from a file (a mounted secret) instead of HF_TOKEN.
printf '%s\n' $TOKEN >"$W/token"
run tokfile --model $REPO --cache "$W/cache-tokfile" --hf-token-file "$W/token"
[ $RC -eq 0 ] && ok "--hf-token-file" || { fail "--hf-token-file (rc $RC)"; cat "$W/tokfile.err"; }
no_auth_to_cdn "token file"

# 4. The connection drops mid-file once: resumed with Range, result identical.
start_hub drop_once
"$BIN" prepare --model $REPO --cache "$W/cache-drop" >"$W/drop.out" 2>"$W/drop.err"
RC=$?
if [ $RC -eq 0 ] && cmp -s "$MODEL/model.safetensors" "$W/cache-drop/hub/test-org--tiny-llama/$SHA/model.safetensors" &&
   grep '"kind": "cdn"' "$W/hub.log" | grep -q '"range": "bytes='; then
    ok "resume after a dropped connection"
else
    fail "resume after a dropped connection (rc $RC)"; cat "$W/drop.err"; cat "$W/hub.log"
fi
grep -q "resuming" "$W/drop.err" || fail "the resume was not reported"

# 5. A partial file left by an interrupted run is continued from its end.
D=$W/cache-partial/hub/test-org--tiny-llama/$SHA
mkdir -p "$D"
head -c 700000 "$MODEL/model.safetensors" >"$D/model.safetensors.incomplete"
: >"$W/hub.log"
run partial --model $REPO --cache "$W/cache-partial"
if [ $RC -eq 0 ] && cmp -s "$MODEL/model.safetensors" "$D/model.safetensors" &&
   grep -q '"range": "bytes=700000-"' "$W/hub.log"; then
    ok "resume from a partial .incomplete file"
else
    fail "resume from a partial file (rc $RC)"; cat "$W/partial.err"; cat "$W/hub.log"
fi

# 6. One wrong byte: the sha256 check rejects the file.
start_hub corrupt
run corrupt --model $REPO --cache "$W/cache-corrupt"
D=$W/cache-corrupt/hub/test-org--tiny-llama/$SHA
if [ $RC -eq 3 ] && grep -q "model.safetensors: sha256" "$W/corrupt.err" && [ ! -e "$D/model.safetensors" ] &&
   [ ! -e "$D/model.safetensors.incomplete" ]; then
    ok "wrong checksum rejected"
else
    fail "wrong checksum (rc $RC)"; cat "$W/corrupt.err"
fi

# 7. 401 without a token: explained.
start_hub 401
env -u HF_TOKEN "$BIN" prepare --quiet --model $REPO --cache "$W/c401" >"$W/e401.out" 2>"$W/e401.err"
RC=$?
if [ $RC -eq 3 ] && grep -q "401" "$W/e401.err" && grep -q "accept the license at $HF_ENDPOINT/$REPO" "$W/e401.err" &&
   grep -q "HF_TOKEN" "$W/e401.err"; then
    ok "401 explained"
else
    fail "401 (rc $RC)"; cat "$W/e401.err"
fi

# 8. 403 (gated, token without access): explained, token not printed.
start_hub 403
HF_TOKEN=$TOKEN run e403 --model $REPO --cache "$W/c403"
if [ $RC -eq 3 ] && grep -q "403" "$W/e403.err" && grep -q "gated" "$W/e403.err" &&
   grep -q "accept the license at" "$W/e403.err"; then
    ok "403 explained"
else
    fail "403 (rc $RC)"; cat "$W/e403.err"
fi

# 9. 404 and a revision that does not exist.
start_hub 404
HF_TOKEN=$TOKEN run e404 --model $REPO --cache "$W/c404"
if [ $RC -eq 3 ] && grep -q "404" "$W/e404.err" && grep -q "check the id" "$W/e404.err"; then
    ok "404 explained"
else
    fail "404 (rc $RC)"; cat "$W/e404.err"
fi
start_hub normal
HF_TOKEN=$TOKEN run rev --model $REPO --revision no-such-branch --cache "$W/crev"
if [ $RC -eq 3 ] && grep -q "RevisionNotFound" "$W/rev.err" && grep -q "no-such-branch" "$W/rev.err"; then
    ok "unknown revision explained"
else
    fail "unknown revision (rc $RC)"; cat "$W/rev.err"
fi

# 10. Hub unreachable: the commit recorded by the first run is used offline.
kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=
HF_TOKEN=$TOKEN run offline --model $REPO --tp 2 --cache "$C"
if [ $RC -eq 0 ] && grep -q "using the cached commit $SHA" "$W/offline.err"; then
    ok "offline reuse"
else
    fail "offline reuse (rc $RC)"; cat "$W/offline.err"
fi

# The token never appears in anything printed.
if grep -q "$TOKEN" "$W/all-output"; then
    fail "the token was printed"
else
    ok "token never printed"
fi

[ $fails -eq 0 ] && echo "all hub tests passed" || echo "$fails hub test(s) failed"
exit $((fails > 0))
