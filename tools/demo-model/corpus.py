#!/usr/bin/env python3
"""Turns public-domain Debian text packages into the demo model's training corpus.

Standard library only (it runs on the developer machine, where no torch is installed).
prepare_corpus.sh drives it; test_corpus.py checks it on small made-up inputs.

Subcommands (each extractor writes JSON lines, one document per line: {"title", "text", ...}):
  kjv            stdin: output of `bible -l100000 "Gen1:1-Rev22:21"` (package bible-kjv)
  imp            stdin: output of `mod2imp MODULE` (a SWORD Bible or commentary, OSIS markup)
  dictd          a dictd database (INDEX, DICT.dz): The Devil's Dictionary, The Jargon File
  build          joins the sources, holds out the last part of each, writes train.txt/valid.txt

Corpus text format (train.txt, valid.txt): documents separated by one blank line; inside a
document, paragraphs are separated by a single newline and no line is empty.
"""

import argparse
import gzip
import hashlib
import html
import json
import os
import re
import sys

DOC_SEP = "\n\n"

# The chat template that train.py writes into tokenizer_config.json renders a conversation as
#   <|bos|><|user|>\nQUESTION<|eos|>\n<|assistant|>\nANSWER<|eos|>\n
# Chat documents in the corpus are that rendering without the leading <|bos|> (the tokenizer's
# post-processor adds it) and without the final newline (documents are stripped).
CHAT_USER = "<|user|>"
CHAT_ASSISTANT = "<|assistant|>"
CHAT_EOS = "<|eos|>"

# ---------------------------------------------------------------------------------------------
# Small text helpers


_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\ufeff]")
_BOX = re.compile(r"[\u2500-\u257f]")


def squash(line):
    """Drops control characters, collapses runs of spaces into one and strips the ends."""
    return _SPACES.sub(" ", _CONTROL.sub("", line)).strip()


def is_drawing(line):
    """True for a line of box-drawing art (a table or diagram), which teaches nothing here."""
    return len(_BOX.findall(line)) >= 3


def normalize_doc(text):
    """Squashes every line, drops empty lines: a document never holds a blank line."""
    lines = [squash(l) for l in text.replace("\r", "").split("\n")]
    return "\n".join(l for l in lines if l and not is_drawing(l))


# ---------------------------------------------------------------------------------------------
# KJV from the `bible` program (package bible-kjv, data in bible-kjv-text)

_KJV_HEADER = re.compile(r"^(\S.*\S) (\d+)$")
_KJV_VERSE = re.compile(r"^\s+(\d+) (.*)$")


def parse_kjv(lines):
    """Yields one document per chapter from the `bible` program's output.

    The output is a chapter header line ("1 Samuel 3"), then one line per verse ("  12 text"),
    with blank lines around headers. Verse numbers are dropped; the verses of a chapter are
    joined into one paragraph. Each document also keeps its verses as [[ref, text], ...].
    """
    title = None
    verses = []
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        m = _KJV_VERSE.match(line)
        if m and title is not None:
            verses.append(["%s:%s" % (title, m.group(1)), squash(m.group(2))])
            continue
        h = _KJV_HEADER.match(line)
        if h:
            if title is not None and verses:
                yield _kjv_doc(title, verses)
            title = line.strip()
            verses = []
            continue
        if title is not None and verses:
            # A wrapped continuation line (when the output was not run with a wide -l).
            verses[-1][1] = squash(verses[-1][1] + " " + line)
            continue
        raise ValueError("kjv: unexpected line before the first chapter header: %r" % line[:80])
    if title is not None and verses:
        yield _kjv_doc(title, verses)


def _kjv_doc(title, verses):
    return {"title": title, "text": " ".join(v[1] for v in verses), "verses": verses}


# ---------------------------------------------------------------------------------------------
# SWORD modules through `mod2imp` (OSIS markup)


def parse_imp(lines):
    """Yields (key, content) from mod2imp output: a line "$$$KEY" starts each entry."""
    key = None
    body = []
    for raw in lines:
        line = raw.rstrip("\n")
        if line.startswith("$$$"):
            if key is not None:
                yield key, "\n".join(body)
            key = line[3:].strip()
            body = []
        elif key is not None:
            body.append(line)
    if key is not None:
        yield key, "\n".join(body)


_OSIS_DROP = re.compile(r"<(note|title|rdg)\b[^>]*/>|<(note|title|rdg)\b[^>]*>.*?</\2\s*>", re.S)
_OSIS_BREAK = re.compile(r"<(lb|p|div|lg)\b[^>]*/?>|</(p|div|lg|l|item)\s*>|<l\b[^>]*\beID=[^>]*/>")
_OSIS_TAG = re.compile(r"<[^>]*>")
# A line that still looks like markup after the tags are gone: some module entries hold a cut
# tag ('importer" subType="x-osis2mod" .../>'); such a line is dropped whole.
_MARKUP_LEFT = re.compile(r'/>|="|</?[A-Za-z]|\bsubType\b|\bsID\b|\beID\b')
_SPACE_PUNCT = re.compile(r"(?<=\w) +([,.;:!?])")
_MHCC_HEADING = re.compile(r"^(Verses?|Chapter) [0-9]+([-,][0-9]+)*\.?$")


def osis_to_text(s):
    """Plain text from an OSIS fragment: footnotes, titles and variant readings are dropped,
    paragraph and poetry-line markers become line breaks, every other tag is removed and
    entities are decoded. Returns normalized document text (possibly empty)."""
    s = _OSIS_DROP.sub(" ", s)
    s = _OSIS_BREAK.sub("\n", s)
    s = _OSIS_TAG.sub("", s)
    # Leftover markup is looked for before entities are decoded, so "&lt;c&gt;" stays as text.
    lines = [squash(html.unescape(l)) for l in s.split("\n") if not _MARKUP_LEFT.search(l)]
    # Curly quotes and dashes stay: they are real text, and the byte-level tokenizer takes them.
    # A dropped footnote leaves a space; one before punctuation ("word ,") is taken out.
    lines = [_SPACE_PUNCT.sub(r"\1", l) for l in lines]
    return "\n".join(l for l in lines if l and not _MHCC_HEADING.match(l))


def imp_chapter(key):
    """"Genesis 1:3" -> "Genesis 1"; keys without a verse part ("[ Module Heading ]") stay."""
    if ":" in key:
        return key.rsplit(":", 1)[0]
    return key


def group_imp(entries, dedupe_paragraphs=False):
    """One document per chapter. Consecutive entries with the same raw content are kept once
    (mod2imp repeats a commentary entry for every verse it is linked to). With
    dedupe_paragraphs, a paragraph already seen anywhere earlier in the source is dropped:
    the Debian commentary modules come out of mod2imp with whole books repeated under
    later keys, and this keeps each paragraph once, in the order it first appeared."""
    title = None
    parts = []
    last_raw = None
    seen = set() if dedupe_paragraphs else None
    for key, raw in entries:
        chapter = imp_chapter(key)
        if chapter != title:
            if title is not None:
                doc = _imp_doc(title, parts, seen)
                if doc:
                    yield doc
            title = chapter
            parts = []
        if raw == last_raw:
            continue
        last_raw = raw
        parts.append(raw)
    if title is not None:
        doc = _imp_doc(title, parts, seen)
        if doc:
            yield doc


def _imp_doc(title, parts, seen):
    # Verses are joined with a space: the markup's own paragraph markers carry the breaks.
    text = osis_to_text(" ".join(parts))
    if seen is not None:
        kept = []
        for para in text.split("\n") if text else []:
            h = hashlib.sha1(para.encode("utf-8")).digest()
            if h not in seen:
                seen.add(h)
                kept.append(para)
        text = "\n".join(kept)
    if not text:
        return None
    return {"title": title, "text": text}


# ---------------------------------------------------------------------------------------------
# dictd databases (.index + .dict.dz)

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dictd_number(s):
    """Decodes dictd's base-64 numbers ("BdqM" -> int)."""
    n = 0
    for ch in s:
        d = _B64.find(ch)
        if d < 0:
            raise ValueError("dictd: bad base-64 digit %r in %r" % (ch, s))
        n = n * 64 + d
    return n


def dictd_entries(index_lines, data):
    """Returns [(headword, text)] in file order, one per distinct entry; skips the database's
    own 00-database* entries. `data` is the uncompressed .dict content (bytes)."""
    seen = {}
    for line in index_lines:
        line = line.rstrip("\n")
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            raise ValueError("dictd: index line without 3 fields: %r" % line[:80])
        head = fields[0]
        if head.startswith("00database") or head.startswith("00-database"):
            continue
        off, size = dictd_number(fields[1]), dictd_number(fields[2])
        if off + size > len(data):
            raise ValueError("dictd: entry %r runs past the end of the data" % head)
        if off not in seen:
            seen[off] = (head, size)
    out = []
    for off in sorted(seen):
        head, size = seen[off]
        out.append((head, data[off:off + size].decode("utf-8", errors="replace")))
    return out


def unwrap(text):
    """Joins hard-wrapped prose lines into paragraphs, keeping verse and code lines apart.

    Within a block (lines between blank lines), a line continues the previous one when it is
    at the block's smallest indent and the previous line was long (it was wrapped at the
    margin). An indented first line, a deeper indent or a short previous line starts a new line.
    """
    out = []
    for block in re.split(r"\n[ \t]*\n", text.replace("\r", "")):
        lines = [l.rstrip() for l in block.split("\n") if l.strip()]
        if not lines:
            continue
        base = min(len(l) - len(l.lstrip()) for l in lines)
        cur = None
        prev_len = 0
        for l in lines:
            indent = len(l) - len(l.lstrip())
            if cur is not None and indent == base and prev_len >= 50:
                cur += " " + l.strip()
            else:
                if cur is not None:
                    out.append(cur)
                cur = l.strip()
            prev_len = len(l)
        if cur is not None:
            out.append(cur)
    return out


_XREF = re.compile(r"\{\s*([^{}]*?)\s*\}")
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_([^_\n]+)_(?![A-Za-z0-9])")


def dict_clean(line):
    line = _XREF.sub(r"\1", line)
    line = _UNDERSCORE.sub(r"\1", line)
    return squash(line)


def devil_doc(head, text):
    """A Devil's Dictionary entry: the headword already opens the text ("CYNIC, n.  ...")."""
    paras = [dict_clean(p) for p in unwrap(text)]
    body = "\n".join(p for p in paras if p)
    return {"title": head, "text": body} if body else None


def jargon_doc(head, text):
    """A Jargon File entry: a headword line, a pronunciation/part-of-speech line, then indented
    paragraphs. The first block becomes one line ("blue wire n.")."""
    blocks = re.split(r"\n[ \t]*\n", text.replace("\r", "").strip("\n"), maxsplit=1)
    first = dict_clean(" ".join(l.strip() for l in blocks[0].split("\n")))
    paras = [dict_clean(p) for p in unwrap(blocks[1])] if len(blocks) > 1 else []
    body = "\n".join(p for p in [first] + paras if p)
    return {"title": head, "text": body, "headword": blocks[0].split("\n")[0].strip()} if body else None


# ---------------------------------------------------------------------------------------------
# Chat documents: a little question/answer material so the chat endpoints have something to do


def chat_text(question, answer):
    return "%s\n%s%s\n%s\n%s%s" % (CHAT_USER, question, CHAT_EOS, CHAT_ASSISTANT, answer, CHAT_EOS)


_DEVIL_HEAD = re.compile(r"^([A-Z][A-Z'\- ]*[A-Z]), ([a-z.]+\.)\s+(.+)$")


def chat_docs(docs_by_source, every_verse=10):
    """Builds chat documents from train-side documents only (so held-out text never appears):
    "What is a cynic?" from The Devil's Dictionary, "What does "foo" mean?" from The Jargon
    File, and "Quote John 3:16." from every `every_verse`-th KJV verse. Returned in a fixed
    pseudo-random order (sorted by a digest of the question)."""
    out = []
    for d in docs_by_source.get("devil", []):
        first = d["text"].split("\n", 1)[0]
        m = _DEVIL_HEAD.match(first)
        if not m:
            continue
        word = m.group(1).lower()
        article = "an" if word[0] in "aeiou" else "a"
        q = "What is %s %s?" % (article, word) if m.group(2).startswith("n") else "What does \"%s\" mean?" % word
        out.append((q, m.group(3)))
    for d in docs_by_source.get("jargon", []):
        lines = d["text"].split("\n")
        if len(lines) < 2 or not d.get("headword"):
            continue
        out.append(("What does \"%s\" mean in hacker slang?" % d["headword"], lines[1]))
    n = 0
    for d in docs_by_source.get("kjv", []):
        for ref, verse in d.get("verses", []):
            if n % every_verse == 0:
                out.append(("Quote %s." % ref, verse))
            n += 1
    out.sort(key=lambda qa: hashlib.sha256(qa[0].encode("utf-8")).hexdigest())
    return [{"title": "chat:" + q, "text": chat_text(q, a)} for q, a in out]


# ---------------------------------------------------------------------------------------------
# Splitting and writing


def doc_bytes(d):
    return len(d["text"].encode("utf-8")) + len(DOC_SEP)


def cap_docs(docs, max_bytes):
    """Keeps documents from the start while their total stays within max_bytes (0: no cap)."""
    if max_bytes <= 0:
        return docs
    out, total = [], 0
    for d in docs:
        b = doc_bytes(d)
        if total + b > max_bytes:
            break
        out.append(d)
        total += b
    return out


def split_tail(docs, frac):
    """Deterministic hold-out: the last documents whose bytes first reach `frac` of the total
    go to valid. At least one document stays on each side when there are two or more."""
    if not docs:
        return [], []
    if len(docs) == 1:
        return list(docs), []
    total = sum(doc_bytes(d) for d in docs)
    want = frac * total
    acc, cut = 0, len(docs)
    while cut > 1 and acc < want:
        cut -= 1
        acc += doc_bytes(docs[cut])
    if cut == len(docs):
        cut -= 1
    return docs[:cut], docs[cut:]


def load_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def write_docs(path, docs):
    """Writes documents separated by a blank line; returns the byte count written."""
    texts = []
    for d in docs:
        t = normalize_doc(d["text"])
        if t:
            texts.append(t)
    data = (DOC_SEP.join(texts) + "\n").encode("utf-8") if texts else b""
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def build(sources, out_dir, valid_frac, max_bytes, caps, chat, versions):
    """sources: [(name, docs)] in a fixed order. Writes train.txt, valid.txt and stats.json."""
    os.makedirs(out_dir, exist_ok=True)
    train_by, valid_by, stats = {}, {}, []
    for name, docs in sources:
        docs = [d for d in docs if normalize_doc(d["text"])]
        docs = cap_docs(docs, caps.get(name, 0))
        tr, va = split_tail(docs, valid_frac)
        train_by[name], valid_by[name] = tr, va
    order = [name for name, _ in sources]
    if chat:
        tr, va = split_tail(chat_docs(train_by), valid_frac)
        train_by["chat"], valid_by["chat"] = tr, va
        order.append("chat")
    train_all, valid_all = [], []
    for name in order:
        tr, va = train_by[name], valid_by[name]
        train_all += tr
        valid_all += va
        stats.append({"source": name, "train_docs": len(tr), "valid_docs": len(va),
                      "train_bytes": sum(doc_bytes(d) for d in tr),
                      "valid_bytes": sum(doc_bytes(d) for d in va)})
    tb = write_docs(os.path.join(out_dir, "train.txt"), train_all)
    vb = write_docs(os.path.join(out_dir, "valid.txt"), valid_all)
    info = {"valid_frac": valid_frac, "train_bytes": tb, "valid_bytes": vb,
            "sources": stats, "packages": versions}
    with open(os.path.join(out_dir, "stats.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    if max_bytes > 0 and tb + vb > max_bytes:
        raise ValueError("corpus is %d bytes, over the limit of %d: lower a --cap" % (tb + vb, max_bytes))
    return info


def print_stats(info, out=sys.stdout):
    out.write("%-8s %10s %12s %10s %12s\n" % ("source", "train_docs", "train_bytes", "valid_docs", "valid_bytes"))
    for s in info["sources"]:
        out.write("%-8s %10d %12d %10d %12d\n" % (s["source"], s["train_docs"], s["train_bytes"],
                                                 s["valid_docs"], s["valid_bytes"]))
    out.write("train.txt %d bytes, valid.txt %d bytes, total %.1f MB\n"
              % (info["train_bytes"], info["valid_bytes"], (info["train_bytes"] + info["valid_bytes"]) / 1e6))


# ---------------------------------------------------------------------------------------------
# Command line


def _emit(docs, out):
    n = 0
    for d in docs:
        out.write(json.dumps(d, ensure_ascii=False) + "\n")
        n += 1
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("kjv", help="stdin: bible program output; stdout: JSON lines")
    p = sub.add_parser("imp", help="stdin: mod2imp output; stdout: JSON lines")
    p.add_argument("--dedupe-paragraphs", action="store_true",
                   help="keep each paragraph once (for commentary modules)")
    p = sub.add_parser("dictd", help="a dictd database; stdout: JSON lines")
    p.add_argument("--kind", choices=["devil", "jargon"], required=True)
    p.add_argument("index")
    p.add_argument("dict_dz")
    p = sub.add_parser("build", help="join sources into train.txt / valid.txt")
    p.add_argument("--out", required=True)
    p.add_argument("--valid-frac", type=float, default=0.02)
    p.add_argument("--max-bytes", type=int, default=30_000_000, help="fail above this total (0: no limit)")
    p.add_argument("--cap", action="append", default=[], metavar="NAME=BYTES",
                   help="keep at most BYTES of source NAME (from its start)")
    p.add_argument("--no-chat", action="store_true", help="leave out the generated chat documents")
    p.add_argument("--versions", help="file of 'package version' lines to record")
    p.add_argument("sources", nargs="+", help="NAME.jsonl files, in corpus order (NAME from the file name)")
    args = ap.parse_args(argv)

    stdin = open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)
    if args.cmd == "kjv":
        n = _emit(parse_kjv(stdin), sys.stdout)
    elif args.cmd == "imp":
        n = _emit(group_imp(parse_imp(stdin), args.dedupe_paragraphs), sys.stdout)
    elif args.cmd == "dictd":
        with open(args.index, encoding="utf-8", errors="replace") as f:
            index = f.readlines()
        with gzip.open(args.dict_dz, "rb") as f:
            data = f.read()
        make = devil_doc if args.kind == "devil" else jargon_doc
        n = _emit((d for d in (make(h, t) for h, t in dictd_entries(index, data)) if d), sys.stdout)
    else:
        caps = {}
        for c in args.cap:
            name, _, val = c.partition("=")
            if not val.isdigit():
                ap.error("--cap wants NAME=BYTES, got %r" % c)
            caps[name] = int(val)
        versions = []
        if args.versions:
            with open(args.versions, encoding="utf-8") as f:
                versions = [l.strip() for l in f if l.strip()]
        sources = [(os.path.basename(p).split(".")[0], load_jsonl(p)) for p in args.sources]
        info = build(sources, args.out, args.valid_frac, args.max_bytes, caps, not args.no_chat, versions)
        print_stats(info)
        return 0
    if n == 0:
        sys.stderr.write("corpus.py %s: no documents in the input\n" % args.cmd)
        return 1
    sys.stderr.write("corpus.py %s: %d documents\n" % (args.cmd, n))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError) as e:
        sys.stderr.write("corpus.py: %s\n" % e)
        sys.exit(1)
