#!/usr/bin/env bash
# Builds the demo model's training corpus from public-domain texts packaged in Debian 12:
# installs the packages, extracts and cleans the text (corpus.py), writes train.txt and a
# held-out valid.txt (last ~2% of every source) into tools/demo-model/.corpus/ (git-ignored).
#
# Usage: bash tools/demo-model/prepare_corpus.sh [OUT_DIR]     (needs root for apt-get, ~1 min)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/.corpus}"
py="${PYTHON:-python3}"

# Every text here is in the public domain (see each package's /usr/share/doc/*/copyright):
#   bible-kjv-text     King James Version (1611), read through the `bible` program (bible-kjv)
#   sword-text-web     World English Bible (public-domain modern English translation)
#   sword-comm-mhcc    Matthew Henry's Concise Commentary (1706)
#   sword-comm-tdavid  C. H. Spurgeon, The Treasury of David (1869-1885)
#   dict-devil         Ambrose Bierce, The Devil's Dictionary (1911)
#   dict-jargon        The Jargon File 4.4.7 (placed in the public domain)
# libsword-utils gives mod2imp, which dumps a SWORD module as text.
text_pkgs=(bible-kjv-text sword-text-web sword-comm-mhcc sword-comm-tdavid dict-devil dict-jargon)
tool_pkgs=(bible-kjv libsword-utils)

missing=()
for p in "${text_pkgs[@]}" "${tool_pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "prepare_corpus: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "prepare_corpus: need root to apt-get install ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

echo "prepare_corpus: extracting"
# -l100000: one verse per line (no wrapping). </dev/null: the program must not wait for input.
bible -l100000 "Gen1:1-Rev22:21" </dev/null | "$py" "$here/corpus.py" kjv >"$tmp/kjv.jsonl"
# mod2imp complains ("Error reading ulCompOffset") for every key that the MHCC module has no
# block for; that is expected and goes to a log, not the terminal.
mod2imp engWEB2015eb 2>>"$tmp/mod2imp.log" | "$py" "$here/corpus.py" imp >"$tmp/web.jsonl"
mod2imp MHCC 2>>"$tmp/mod2imp.log" | "$py" "$here/corpus.py" imp --dedupe-paragraphs >"$tmp/mhcc.jsonl"
mod2imp TDavid 2>>"$tmp/mod2imp.log" | "$py" "$here/corpus.py" imp --dedupe-paragraphs >"$tmp/tdavid.jsonl"
echo "prepare_corpus: mod2imp reported $(wc -l <"$tmp/mod2imp.log") unreadable keys (expected for MHCC)"
"$py" "$here/corpus.py" dictd --kind devil /usr/share/dictd/devil.index /usr/share/dictd/devil.dict.dz >"$tmp/devil.jsonl"
"$py" "$here/corpus.py" dictd --kind jargon /usr/share/dictd/jargon.index /usr/share/dictd/jargon.dict.dz >"$tmp/jargon.jsonl"

dpkg-query -W -f='${Package} ${Version}\n' "${text_pkgs[@]}" "${tool_pkgs[@]}" >"$tmp/versions.txt"

echo "prepare_corpus: cleaning and splitting into $out"
"$py" "$here/corpus.py" build --out "$out" --valid-frac 0.02 --max-bytes 30000000 \
  --versions "$tmp/versions.txt" \
  "$tmp/kjv.jsonl" "$tmp/web.jsonl" "$tmp/mhcc.jsonl" "$tmp/tdavid.jsonl" \
  "$tmp/devil.jsonl" "$tmp/jargon.jsonl"
sed 's/^/  /' "$tmp/versions.txt"
(cd "$out" && sha256sum train.txt valid.txt | tee SHA256SUMS)
du -sh "$out"
