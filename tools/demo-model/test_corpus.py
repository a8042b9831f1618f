#!/usr/bin/env python3
"""Checks of the demo-model recipe that need no torch: corpus extraction, cleaning, splitting,
and train.py's plain parts (model size, schedule, chat template, output names).

Run: PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s tools/demo-model -p 'test_*.py'
(standard library; jinja2 is used where installed)."""

import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ beside the scripts

import corpus  # noqa: E402
import train  # noqa: E402  (imports no torch at module level)

try:
    import jinja2  # noqa: F401
    HAVE_JINJA = True
except ImportError:
    HAVE_JINJA = False


KJV_SAMPLE = """
Genesis 1

  1 In the beginning God created the heaven and the earth.
  2 And the earth was without form, and void; and darkness was upon the face of
the deep.

Psalms 117

  1 O praise the LORD, all ye nations:  praise him, all ye people.
  2 For his merciful kindness is great toward us.
"""

IMP_SAMPLE = """$$$[ Testament 1 Heading ]
<milestone type="x-importer" subType="x-osis2mod" n="$Rev: 1 $"/>
$$$Genesis 1:1
<div sID="g1" type="x-p"/><title type="x-s">The Creation</title><w lemma="strong:H1">In</w> the beginning, <w>God</w><note placement="foot"><reference>1:1 </reference>The Hebrew word.</note> created &amp; made.
$$$Genesis 1:2
The earth was formless.<div eID="g1" type="x-p"/>
$$$Genesis 1:3
<l sID="l1"/>Let there be light,<l eID="l1"/><l sID="l2"/>and there was light.<l eID="l2"/>
$$$Genesis 2:1
<hi type="bold">Verses 1-3</hi><div sID="x" type="x-p"/> Shared commentary.<div eID="x" type="x-p"/>
$$$Genesis 2:2
<hi type="bold">Verses 1-3</hi><div sID="x" type="x-p"/> Shared commentary.<div eID="x" type="x-p"/>
$$$Genesis 2:3
importer" subType="x-osis2mod" n="$Rev: 3769 $"/>
$$$Genesis 3:1
<div sID="y" type="x-p"/>Shared commentary.<div eID="y" type="x-p"/>New words here.
"""


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def dictd_b64(n):
    digits = corpus._B64
    if n == 0:
        return "A"
    s = ""
    while n:
        s = digits[n % 64] + s
        n //= 64
    return s


class TestKjv(unittest.TestCase):
    def test_chapters_and_verses(self):
        docs = list(corpus.parse_kjv(io.StringIO(KJV_SAMPLE)))
        self.assertEqual([d["title"] for d in docs], ["Genesis 1", "Psalms 117"])
        self.assertEqual(docs[0]["text"], "In the beginning God created the heaven and the earth. "
                         "And the earth was without form, and void; and darkness was upon the face of the deep.")
        self.assertEqual(docs[1]["verses"][0], ["Psalms 117:1", "O praise the LORD, all ye nations: praise him, all ye people."])
        self.assertEqual(len(docs[1]["verses"]), 2)

    def test_garbage_before_header_is_an_error(self):
        with self.assertRaises(ValueError):
            list(corpus.parse_kjv(io.StringIO("  1 a verse with no chapter\n")))


class TestImp(unittest.TestCase):
    def test_parse_imp_keys(self):
        keys = [k for k, _ in corpus.parse_imp(io.StringIO(IMP_SAMPLE))]
        self.assertEqual(keys[0], "[ Testament 1 Heading ]")
        self.assertEqual(keys[1:4], ["Genesis 1:1", "Genesis 1:2", "Genesis 1:3"])
        self.assertEqual(len(keys), 8)

    def test_osis_to_text(self):
        s = ('<div sID="a" type="x-p"/><title>Head</title><w lemma="x">In</w> the <w>beginning</w>'
             '<note placement="foot">a note</note>, A &amp; B &lt;c&gt;.<lb/>Next line.')
        self.assertEqual(corpus.osis_to_text(s), "In the beginning, A & B <c>.\nNext line.")
        self.assertEqual(corpus.osis_to_text('importer" subType="x-osis2mod"/>'), "")
        self.assertEqual(corpus.osis_to_text("<hi>Verses 3-5</hi><div/>Text."), "Text.")

    def test_group_bible(self):
        docs = list(corpus.group_imp(corpus.parse_imp(io.StringIO(IMP_SAMPLE))))
        self.assertEqual([d["title"] for d in docs], ["Genesis 1", "Genesis 2", "Genesis 3"])
        self.assertEqual(docs[0]["text"], "In the beginning, God created & made. The earth was formless.\n"
                         "Let there be light,\nand there was light.")
        # consecutive repeats are dropped; the cut tag line is dropped
        self.assertEqual(docs[1]["text"], "Shared commentary.")
        self.assertEqual(docs[2]["text"], "Shared commentary.\nNew words here.")

    def test_group_dedupe_paragraphs(self):
        docs = list(corpus.group_imp(corpus.parse_imp(io.StringIO(IMP_SAMPLE)), dedupe_paragraphs=True))
        self.assertEqual(docs[2]["text"], "New words here.")

    def test_chapter_key(self):
        self.assertEqual(corpus.imp_chapter("1 John 3:16"), "1 John 3")
        self.assertEqual(corpus.imp_chapter("[ Module Heading ]"), "[ Module Heading ]")


class TestDictd(unittest.TestCase):
    def test_number(self):
        self.assertEqual(corpus.dictd_number("A"), 0)
        self.assertEqual(corpus.dictd_number("BA"), 64)
        self.assertEqual(corpus.dictd_number("BdqM"), ((1 * 64 + 29) * 64 + 42) * 64 + 12)
        with self.assertRaises(ValueError):
            corpus.dictd_number("A-")

    def test_entries(self):
        e1 = "CYNIC, n.  A blackguard whose faulty vision sees things as they are,\nnot as they ought to be.\n"
        e2 = "ZEAL, n.  A certain nervous disorder.\n"
        data = ("header\n" + e1 + e2).encode()
        o1, o2 = len("header\n"), len("header\n") + len(e1)
        index = ["00databaseshort\tA\tH\n",
                 "cynic\t%s\t%s\n" % (dictd_b64(o1), dictd_b64(len(e1))),
                 "cynics\t%s\t%s\n" % (dictd_b64(o1), dictd_b64(len(e1))),
                 "zeal\t%s\t%s\n" % (dictd_b64(o2), dictd_b64(len(e2)))]
        ents = corpus.dictd_entries(index, data)
        self.assertEqual([h for h, _ in ents], ["cynic", "zeal"])
        self.assertEqual(ents[1][1], e2)
        d = corpus.devil_doc(*ents[0])
        self.assertEqual(d["text"], "CYNIC, n. A blackguard whose faulty vision sees things as they are, "
                         "not as they ought to be.")
        with self.assertRaises(ValueError):
            corpus.dictd_entries(["x\t%s\tZZ\n" % dictd_b64(o2)], data)
        with self.assertRaises(ValueError):
            corpus.dictd_entries(["only-one-field\n"], data)

    def test_unwrap(self):
        text = ("    Meantime, too, some of the enterprising humorists of the country\n"
                "had helped themselves.\n"
                "\n"
                "    Said a man to a crapulent youth:  \"I thought\n"
                "        You a total abstainer, my son.\"\n")
        self.assertEqual(corpus.unwrap(text), [
            "Meantime, too, some of the enterprising humorists of the country had helped themselves.",
            "Said a man to a crapulent youth:  \"I thought",
            "You a total abstainer, my son.\""])

    def test_jargon_doc(self):
        raw = ("blue wire\n n.\n\n    [IBM] Patch wires added to circuit boards at the factory to correct\n"
               "    design or fabrication problems, when there was no time to make another {purple\n"
               "    wire}, _red_ wire.\n")
        d = corpus.jargon_doc("blue wire", raw)
        self.assertEqual(d["headword"], "blue wire")
        self.assertEqual(d["text"], "blue wire n.\n[IBM] Patch wires added to circuit boards at the factory "
                         "to correct design or fabrication problems, when there was no time to make another purple wire, red wire.")

    def test_drawing_lines_dropped(self):
        self.assertEqual(corpus.normalize_doc("a\n\u2500\u2500\u2500\u2500\n  b  \x07c\n\n"), "a\nb c")


class TestSplit(unittest.TestCase):
    def docs(self, sizes):
        return [{"title": str(i), "text": "x" * s} for i, s in enumerate(sizes)]

    def test_tail_fraction(self):
        docs = self.docs([100] * 100)
        tr, va = corpus.split_tail(docs, 0.02)
        self.assertEqual(len(va), 2)
        self.assertEqual(tr + va, docs)
        self.assertEqual(va[-1]["title"], "99")

    def test_edges(self):
        self.assertEqual(corpus.split_tail([], 0.02), ([], []))
        one = self.docs([5])
        self.assertEqual(corpus.split_tail(one, 0.5), (one, []))
        two = self.docs([5, 5])
        self.assertEqual(corpus.split_tail(two, 0.99), (two[:1], two[1:]))
        self.assertEqual(corpus.split_tail(two, 0.0001), (two[:1], two[1:]))

    def test_cap(self):
        docs = self.docs([10, 10, 10])
        self.assertEqual(len(corpus.cap_docs(docs, 0)), 3)
        self.assertEqual(len(corpus.cap_docs(docs, 2 * (10 + len(corpus.DOC_SEP)))), 2)


class TestChatAndBuild(unittest.TestCase):
    def sources(self):
        kjv = [{"title": "Genesis %d" % c, "text": "v%d" % c,
                "verses": [["Genesis %d:%d" % (c, v), "Verse %d of chapter %d." % (v, c)] for v in range(1, 11)]}
               for c in range(1, 51)]
        devil = [{"title": "cynic", "text": "CYNIC, n. A blackguard.\nA poem line."},
                 {"title": "abase", "text": "ABASE, v.t. To lower."},
                 {"title": "odd", "text": "no headword pattern here"}]
        jargon = [{"title": "foo", "text": "foo /foo/, n.\nA sample name.", "headword": "foo"}]
        return [("kjv", kjv), ("devil", devil), ("jargon", jargon)]

    def test_chat_docs(self):
        by = dict(self.sources())
        chats = corpus.chat_docs(by, every_verse=10)
        texts = [c["text"] for c in chats]
        self.assertIn("<|user|>\nWhat is a cynic?<|eos|>\n<|assistant|>\nA blackguard.<|eos|>", texts)
        self.assertIn("<|user|>\nWhat does \"abase\" mean?<|eos|>\n<|assistant|>\nTo lower.<|eos|>", texts)
        self.assertIn("<|user|>\nWhat does \"foo\" mean in hacker slang?<|eos|>\n<|assistant|>\nA sample name.<|eos|>", texts)
        self.assertIn("<|user|>\nQuote Genesis 1:1.<|eos|>\n<|assistant|>\nVerse 1 of chapter 1.<|eos|>", texts)
        self.assertEqual(len(chats), 2 + 1 + 50)  # "odd" has no headword; every 10th of 500 verses
        self.assertEqual(chats, corpus.chat_docs(by, every_verse=10))  # deterministic

    def test_build_files(self):
        with tempfile.TemporaryDirectory() as tmp:
            info = corpus.build(self.sources(), tmp, 0.1, 0, {}, True, ["pkg 1.0"])
            train_t = read(os.path.join(tmp, "train.txt"))
            valid_t = read(os.path.join(tmp, "valid.txt"))
            self.assertTrue(train_t.startswith("v1\n\nv2\n\n"))
            self.assertTrue(train_t.endswith("\n") and not train_t.endswith("\n\n"))
            tr_docs = train.load_docs(os.path.join(tmp, "train.txt"))
            va_docs = train.load_docs(os.path.join(tmp, "valid.txt"))
            self.assertIn("v50", va_docs)
            self.assertNotIn("v50", tr_docs)
            # chat documents come from train-side chapters only
            self.assertFalse(any("Genesis 50:" in d for d in tr_docs + va_docs))
            self.assertTrue(any(d.startswith("<|user|>\nWhat is a cynic?") for d in tr_docs + va_docs))
            self.assertEqual(info["packages"], ["pkg 1.0"])
            self.assertEqual(info["train_bytes"], len(train_t.encode()))
            self.assertEqual(len(valid_t.encode()), info["valid_bytes"])
            names = [s["source"] for s in info["sources"]]
            self.assertEqual(names, ["kjv", "devil", "jargon", "chat"])
            stats = json.loads(read(os.path.join(tmp, "stats.json")))
            self.assertEqual(stats["valid_frac"], 0.1)
            with self.assertRaises(ValueError):
                corpus.build(self.sources(), tmp, 0.1, 100, {}, True, [])

    def test_cli_dictd_and_kjv(self):
        with tempfile.TemporaryDirectory() as tmp:
            e = "ZEAL, n.  A certain nervous disorder.\n"
            with gzip.open(os.path.join(tmp, "d.dict.dz"), "wb") as f:
                f.write(e.encode())
            with open(os.path.join(tmp, "d.index"), "w") as f:
                f.write("zeal\tA\t%s\n" % dictd_b64(len(e)))
            r = subprocess.run([sys.executable, os.path.join(HERE, "corpus.py"), "dictd", "--kind", "devil",
                                os.path.join(tmp, "d.index"), os.path.join(tmp, "d.dict.dz")],
                               capture_output=True, text=True, check=True)
            self.assertEqual(json.loads(r.stdout), {"title": "zeal", "text": "ZEAL, n. A certain nervous disorder."})
            r = subprocess.run([sys.executable, os.path.join(HERE, "corpus.py"), "kjv"], input="",
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 1)
            self.assertIn("no documents", r.stderr)


class TestTrainPlainParts(unittest.TestCase):
    def test_model_size(self):
        n = train.param_count(train.VOCAB_SIZE, train.MODEL)
        self.assertEqual(n, 7918464)
        self.assertLessEqual(2 * n, train.MAX_MODEL_BYTES)
        self.assertLess(train.MAX_MODEL_BYTES + 100_000, 16 * 1024 * 1024)  # header room, transfer limit
        m = train.MODEL
        self.assertEqual(m["hidden_size"] % m["num_attention_heads"], 0)
        self.assertEqual(m["num_attention_heads"] % m["num_key_value_heads"], 0)
        self.assertLessEqual(train.SEQ_LEN, m["max_position_embeddings"])

    def test_schedule(self):
        self.assertAlmostEqual(train.lr_at(0, 0.0), train.PEAK_LR / train.WARMUP_STEPS)
        self.assertAlmostEqual(train.lr_at(train.WARMUP_STEPS, 0.0), train.PEAK_LR)
        self.assertAlmostEqual(train.lr_at(10 ** 6, 1.0), train.PEAK_LR * train.MIN_LR_FRAC)
        self.assertAlmostEqual(train.lr_at(10 ** 6, 2.0), train.PEAK_LR * train.MIN_LR_FRAC)
        mid = train.lr_at(10 ** 6, 0.5)
        self.assertAlmostEqual(mid, train.PEAK_LR * (1 + train.MIN_LR_FRAC) / 2)

    def test_special_tokens_and_config(self):
        self.assertEqual(train.SPECIAL_TOKENS[train.BOS_ID], "<|bos|>")
        self.assertEqual(train.SPECIAL_TOKENS[train.EOS_ID], "<|eos|>")
        self.assertEqual(corpus.CHAT_EOS, train.EOS)
        cfg = train.tokenizer_config()
        self.assertEqual(cfg["bos_token"], "<|bos|>")
        self.assertEqual(cfg["eos_token"], "<|eos|>")
        self.assertEqual(cfg["chat_template"], train.CHAT_TEMPLATE)
        self.assertEqual(sorted(int(k) for k in cfg["added_tokens_decoder"]), list(range(len(train.SPECIAL_TOKENS))))
        for role in ("system", "user", "assistant"):
            self.assertIn("<|%s|>" % role, train.SPECIAL_TOKENS)

    def test_outputs(self):
        self.assertEqual(len(train.OUT_FILES), 7)
        self.assertEqual(len(set(train.OUT_FILES)), 7)
        self.assertEqual(len(train.GOLDEN_PROMPTS), 4)
        self.assertEqual(train.resolve_out("/x", {"OUT": "/o"}), "/x")
        self.assertEqual(train.resolve_out(None, {"OUT": "/o"}), "/o/demo-model")
        self.assertIsNone(train.resolve_out(None, {}))

    def test_args(self):
        a = train.parse_args(["--corpus", "c", "--minutes", "4", "--out", "o"])
        self.assertEqual((a.corpus, a.minutes, a.out, a.steps, a.seed), ("c", 4.0, "o", 0, train.SEED))

    def test_missing_corpus_exits_2(self):
        with tempfile.TemporaryDirectory() as tmp:
            r = subprocess.run([sys.executable, os.path.join(HERE, "train.py"), "--corpus", tmp, "--out", tmp],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 2)
            self.assertIn("prepare_corpus.sh", r.stderr)

    @unittest.skipUnless(HAVE_JINJA, "jinja2 not installed")
    def test_chat_template_matches_corpus(self):
        q, a = "What is a cynic?", "A blackguard."
        msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        full = train.render_chat(msgs, add_generation_prompt=False)
        self.assertEqual(full, "<|bos|>" + corpus.chat_text(q, a) + "\n")
        self.assertEqual(train.render_chat(msgs[:1]), "<|bos|><|user|>\nWhat is a cynic?<|eos|>\n<|assistant|>\n")
        sys_msgs = [{"role": "system", "content": "Be brief."}] + msgs[:1]
        self.assertTrue(train.render_chat(sys_msgs).startswith("<|bos|><|system|>\nBe brief.<|eos|>\n<|user|>"))


class TestScripts(unittest.TestCase):
    def test_shell_syntax(self):
        subprocess.run(["bash", "-n", os.path.join(HERE, "prepare_corpus.sh")], check=True)

    @unittest.skipUnless(os.path.isfile(os.path.join(HERE, ".corpus", "stats.json")), "corpus not prepared")
    def test_prepared_corpus(self):
        d = os.path.join(HERE, ".corpus")
        stats = json.loads(read(os.path.join(d, "stats.json")))
        total = stats["train_bytes"] + stats["valid_bytes"]
        self.assertLessEqual(total, 30_000_000)
        self.assertEqual(os.path.getsize(os.path.join(d, "train.txt")), stats["train_bytes"])
        frac = stats["valid_bytes"] / total
        self.assertTrue(0.01 < frac < 0.04, frac)
        with open(os.path.join(d, "valid.txt"), encoding="utf-8") as f:
            head = f.read(20000)
        self.assertNotIn("<w ", head)
        self.assertNotIn("lemma=", head)


if __name__ == "__main__":
    unittest.main()
