/* tok_internal.h — the tokenizer's internal structures, shared by the tok_*.c files (not a public API;
 * tests may include it to reach the BPE word encoder directly). Everything here is immutable after load. */
#ifndef SS_TOK_INTERNAL_H
#define SS_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

/* ---- growable byte buffer (ss_realloc), capped ---- */
typedef struct ss_tok_buf {
    char *p;
    size_t len, cap;
    size_t limit; /* 0: none; else growing beyond limit bytes fails (SS_ERR_CAPACITY) */
} ss_tok_buf;
/* Normalizers or decoders that multiply the text (a tokenizer.json's chained Replace of ' ' by many spaces:
 * fuzz_tokjson, session 60) would take time and memory without end; real ones grow it at most ~11 times (NFKC's
 * widest) and 3 (a space as U+2581), so a text of n bytes may grow to this many times n, plus 4 KiB, and no more. */
#define SS_TOK_MAX_GROWTH 64
size_t ss_tok_growth_limit(size_t n);
ss_status ss_tok_buf_reserve(ss_tok_buf *b, size_t extra);
ss_status ss_tok_buf_append(ss_tok_buf *b, const void *p, size_t n);
void ss_tok_buf_free(ss_tok_buf *b);

/* ---- growable int32 vector ---- */
typedef struct ss_tok_ids {
    int32_t *v;
    size_t n, cap;
} ss_tok_ids;
ss_status ss_tok_ids_push(ss_tok_ids *a, int32_t id);

/* ---- byte strings table: id -> bytes, one arena ---- */
typedef struct ss_tok_strtab {
    char *arena;       /* all strings, each NUL-terminated */
    size_t arena_len, arena_cap;
    uint64_t *off;     /* [n] offset into arena; UINT64_MAX: no string for this id */
    uint32_t *len;     /* [n] */
    size_t n;
} ss_tok_strtab;
ss_status ss_tok_strtab_init(ss_tok_strtab *t, size_t n);
ss_status ss_tok_strtab_set(ss_tok_strtab *t, size_t id, const char *s, size_t len);
void ss_tok_strtab_free(ss_tok_strtab *t);
static inline const char *ss_tok_strtab_get(const ss_tok_strtab *t, size_t id, size_t *len)
{
    if (id >= t->n || t->off[id] == UINT64_MAX)
        return NULL;
    *len = t->len[id];
    return t->arena + t->off[id];
}

/* ---- byte string -> id map over a strtab (open addressing) ---- */
typedef struct ss_tok_strmap {
    const ss_tok_strtab *keys; /* borrowed: key of id i is keys[i] */
    uint64_t *slots;           /* [mask+1] (hash << 32) | (id + 1); 0 = empty */
    size_t mask;
} ss_tok_strmap;
ss_status ss_tok_strmap_build(ss_tok_strmap *m, const ss_tok_strtab *keys);
int32_t ss_tok_strmap_get(const ss_tok_strmap *m, const char *s, size_t len);
void ss_tok_strmap_free(ss_tok_strmap *m);
uint32_t ss_tok_hash(const char *s, size_t len);

/* ---- (left id, right id) -> (rank, merged id) ---- */
typedef struct ss_tok_merge_slot {
    uint64_t key; /* UINT64_MAX = empty */
    uint32_t rank;
    int32_t new_id;
} ss_tok_merge_slot;
typedef struct ss_tok_mergemap {
    ss_tok_merge_slot *slots;
    size_t mask, n;
} ss_tok_mergemap;
ss_status ss_tok_mergemap_init(ss_tok_mergemap *m, size_t n);
/* Returns 0 when inserted, 1 when the pair was already there (the first rank is kept). */
int ss_tok_mergemap_put(ss_tok_mergemap *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id);
static inline const ss_tok_merge_slot *ss_tok_mergemap_get(const ss_tok_mergemap *m, int32_t a, int32_t b)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & m->mask;
    for (;;) {
        const ss_tok_merge_slot *s = &m->slots[i];
        if (s->key == key)
            return s;
        if (s->key == UINT64_MAX)
            return NULL;
        i = (i + 1) & m->mask;
    }
}
void ss_tok_mergemap_free(ss_tok_mergemap *m);

/* ---- UTF-8 helpers ---- */
/* Length of the valid UTF-8 sequence at s[0..n), or 0 when invalid/incomplete. */
size_t ss_tok_utf8_len(const unsigned char *s, size_t n);
/* Decodes one valid character (ss_tok_utf8_len(s) > 0). */
uint32_t ss_tok_utf8_decode(const unsigned char *s, size_t clen);
size_t ss_tok_utf8_encode(uint32_t cp, char out[4]);
/* Offset of the first invalid byte, or n when all valid. */
size_t ss_tok_utf8_validate(const char *s, size_t n);
/* Appends s with invalid sequences replaced by U+FFFD (maximal subparts, as Rust's from_utf8_lossy). */
ss_status ss_tok_utf8_lossy_append(ss_tok_buf *out, const char *s, size_t n);
int ss_tok_is_space(uint32_t cp);   /* Unicode White_Space */
int ss_tok_is_word(uint32_t cp);    /* \w: alphabetic, mark, decimal digit, connector punctuation, join control */
int ss_tok_is_numeric(uint32_t cp); /* general category N* */

/* ---- components ---- */
typedef enum ss_tok_norm_kind {
    SS_TOK_NORM_NFC,
    SS_TOK_NORM_NFD,
    SS_TOK_NORM_NFKC,
    SS_TOK_NORM_NFKD,
    SS_TOK_NORM_PREPEND,
    SS_TOK_NORM_REPLACE,
    SS_TOK_NORM_STRIP,
} ss_tok_norm_kind;
typedef struct ss_tok_norm {
    ss_tok_norm_kind kind;
    char *a, *b;        /* PREPEND: a = prefix; REPLACE: a = pattern, b = content (owned) */
    size_t a_len, b_len;
    int left, right;    /* STRIP */
} ss_tok_norm;

typedef enum ss_tok_split_behavior {
    SS_TOK_SPLIT_REMOVED,
    SS_TOK_SPLIT_ISOLATED,
    SS_TOK_SPLIT_MERGED_PREV,
    SS_TOK_SPLIT_MERGED_NEXT,
    SS_TOK_SPLIT_CONTIGUOUS,
} ss_tok_split_behavior;

typedef enum ss_tok_pretok_kind {
    SS_TOK_PRE_SPLIT,
    SS_TOK_PRE_BYTELEVEL,
    SS_TOK_PRE_METASPACE,
    SS_TOK_PRE_DIGITS,
} ss_tok_pretok_kind;
typedef enum ss_tok_prepend { SS_TOK_PREPEND_ALWAYS, SS_TOK_PREPEND_FIRST, SS_TOK_PREPEND_NEVER } ss_tok_prepend;
typedef struct ss_tok_pretok {
    ss_tok_pretok_kind kind;
    pcre2_code *re;          /* SPLIT (regex form) and BYTELEVEL with use_regex; owned */
    char *literal;           /* SPLIT (string form); owned */
    size_t literal_len;
    ss_tok_split_behavior behavior;
    int add_prefix_space;    /* BYTELEVEL */
    char repl[8];            /* METASPACE replacement character (UTF-8) */
    size_t repl_len;
    ss_tok_prepend prepend;  /* METASPACE */
    int split;               /* METASPACE */
    int individual_digits;   /* DIGITS */
} ss_tok_pretok;

typedef enum ss_tok_dec_kind {
    SS_TOK_DEC_BYTELEVEL,
    SS_TOK_DEC_METASPACE,
    SS_TOK_DEC_REPLACE,
    SS_TOK_DEC_BYTEFALLBACK,
    SS_TOK_DEC_FUSE,
    SS_TOK_DEC_STRIP,
} ss_tok_dec_kind;
typedef struct ss_tok_dec {
    ss_tok_dec_kind kind;
    char *a, *b;        /* REPLACE: pattern, content; METASPACE: a = replacement char (owned) */
    size_t a_len, b_len;
    uint32_t strip_char; /* STRIP */
    size_t start, stop;  /* STRIP */
    ss_tok_prepend prepend; /* METASPACE */
} ss_tok_dec;

typedef struct ss_tok_tmpl_item {
    int is_seq;          /* 1: the input sequence; 0: special ids */
    int32_t *ids;        /* owned */
    size_t n;
} ss_tok_tmpl_item;
typedef struct ss_tok_tmpl {
    ss_tok_tmpl_item *items;
    size_t n;
} ss_tok_tmpl;

typedef struct ss_tok_added {
    char *content;       /* owned, NUL-terminated */
    size_t len;
    int32_t id;
    int single_word, lstrip, rstrip, normalized, special;
} ss_tok_added;

/* Added-token matcher: tokens bucketed by first byte, longest first. */
typedef struct ss_tok_matcher {
    uint32_t *order;     /* indices into tok->added, grouped by first byte, longest first within */
    uint32_t start[257]; /* bucket b = order[start[b] .. start[b+1]) */
    size_t n;
    char **norm_content; /* normalized-form content for normalized tokens (owned), else NULL */
    size_t *norm_len;
} ss_tok_matcher;

struct ss_tokenizer {
    char *path; /* tokenizer.json path (owned), for messages */

    /* model (BPE) */
    ss_tok_strtab vocab;      /* id -> token string for decoding (added tokens override the model's) */
    ss_tok_strtab model_toks; /* id -> model vocabulary token string as in the file */
    ss_tok_strtab enc_keys;   /* byte-level only: id -> raw bytes the token stands for */
    ss_tok_strmap enc_map;    /* model vocabulary by the bytes the model matches on */
    ss_tok_strmap tok_map;    /* model vocabulary by token string */
    ss_tok_mergemap merges;
    int32_t vocab_size;      /* max id + 1 over model and added tokens */
    int byte_level;          /* model works on raw bytes (ByteLevel pre-tokenizer present) */
    int32_t byte_id[256];    /* byte-level: id of each single byte, -1 if absent */
    int16_t char_byte[324];  /* byte-level alphabet: code point -> byte, -1 outside it */
    int32_t ascii_id[128];   /* non-byte-level: id of each ASCII character, -1 if absent */
    int32_t byte_fb_id[256]; /* byte_fallback: id of "<0xXX>", -1 if absent */
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;          /* -1 when none */

    ss_tok_norm *norms;
    size_t n_norms;
    ss_tok_pretok *pretoks;
    size_t n_pretoks;
    ss_tok_dec *decs;
    size_t n_decs;
    int has_decoder;
    int detok_no_cut;        /* decoder chain not streamable window by window: hold until flush */
    ss_tok_tmpl *tmpls;
    size_t n_tmpls;

    ss_tok_added *added;
    size_t n_added;
    int32_t *added_by_id;    /* [vocab_size] index into added, -1 when not an added token */
    ss_tok_matcher match_raw;  /* normalized == false tokens, matched on the raw text */
    ss_tok_matcher match_norm; /* normalized == true tokens, matched on normalized text */

    pcre2_general_context *gctx;

    char *chat_template, *bos_token, *eos_token;
};

/* tok_bpe.c: appends the ids of one pre-token (bytes in the model's key space). force_heap: use
 * the heap-based merge loop whatever the length (tests compare both loops). */
ss_status ss_tok_bpe_word(const ss_tokenizer *tok, const char *p, size_t len, int force_heap, ss_tok_ids *out,
                          ss_err *err);

/* tok_encode.c: runs the normalizer chain (out replaced). tok_load.c: the added-token matchers. */
ss_status ss_tok_normalize(const ss_tokenizer *tok, const char *s, size_t n, ss_tok_buf *out, ss_err *err);
ss_status ss_tok_matcher_build(ss_tokenizer *tok, ss_tok_matcher *m, int normalized, ss_err *err);
void ss_tok_matcher_free(ss_tok_matcher *m);

/* tok_decode.c: decodes token strings (ptrs/lens) through the decoder chain and appends to out.
 * at_start: tokens[0] is the first token of the whole sequence. raw: bytes that do not form valid UTF-8
 * are kept as they are instead of becoming U+FFFD. */
ss_status ss_tok_decode_tokens(const ss_tokenizer *tok, const char *const *toks, const size_t *lens, size_t n,
                               int at_start, int raw, ss_tok_buf *out, ss_err *err);

#endif
