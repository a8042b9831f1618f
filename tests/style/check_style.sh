#!/usr/bin/env bash
# check_style.sh — the written-down rules a tool can check (STYLE.md §14): no sprintf/strcpy/strcat/
# strtok/atoi/atol/gets in src/, no exit()/abort() outside src/cli/main.c, a header comment at the top
# of every source file, and no source file over 1,500 lines without a reason listed here.
set -u
cd "$(dirname "$0")/../.."
fail=0
bad=$(grep -rnE '(^|[^_a-zA-Z0-9.>])(sprintf|strcpy|strcat|strtok|atoi|atol|gets)[[:space:]]*\(' src --include='*.c' --include='*.h' --include='*.cu' | grep -vE 'snprintf|vsnprintf')
[ -n "$bad" ] && { echo "banned string/number functions:"; echo "$bad"; fail=1; }
bad=$(grep -rnE '(^|[^_a-zA-Z0-9.>])(exit|abort)[[:space:]]*\(' src --include='*.c' --include='*.cu' | grep -v '^src/cli/main.c' | grep -vE '^\S+:[0-9]+:\s*(/?\*|//)')
[ -n "$bad" ] && { echo "exit()/abort() outside main:"; echo "$bad"; fail=1; }
for f in $(find src -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh'); do
  head -1 "$f" | grep -qE '^(/\*|//)' || { echo "$f: no header comment saying what the file is for"; fail=1; }
  n=$(wc -l <"$f")
  if [ "$n" -gt 1500 ]; then echo "$f: $n lines (split it by responsibility)"; fail=1; fi
done
[ $fail = 0 ] && echo "style: 1 passed, 0 failed" || echo "style: 0 passed, 1 failed"
exit $fail
