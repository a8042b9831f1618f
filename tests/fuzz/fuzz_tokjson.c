/* fuzz_tokjson.c — libFuzzer target: tokenizer.json as a model repository ships it (untrusted) must load or be refused
 * without crashing or leaking; a loaded one must encode and decode a fixed text of mixed scripts and any of its ids. */
#include <stddef.h>
#include <stdint.h>

#include "core/alloc.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ss_tokenizer *tok = NULL;
    ss_err err;
    if (ss_tokenizer_load_json((const char *)data, size, "fuzz", &tok, &err) != SS_OK)
        return 0;
    static const char text[] = "Hello w\xc3\xb6rld!  12345 <s> <|x|>\n\ttab \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x99\x82";
    int32_t *ids = NULL;
    size_t n = 0;
    if (ss_tokenizer_encode(tok, text, sizeof text - 1, (int)(size & 1), &ids, &n, &err) == SS_OK) {
        char *out = NULL;
        size_t len = 0;
        if (ss_tokenizer_decode(tok, ids, n, 0, &out, &len, &err) == SS_OK)
            ss_free(out);
        ss_free(ids);
    }
    /* ids spread over the whole vocabulary, decoded with special tokens skipped */
    const int32_t vocab = ss_tokenizer_vocab_size(tok);
    int32_t spread[64];
    for (int i = 0; vocab > 0 && i < 64; i++)
        spread[i] = (int32_t)(((uint32_t)i * 7919u) % (uint32_t)vocab);
    char *out = NULL;
    size_t len = 0;
    if (vocab > 0 && ss_tokenizer_decode(tok, spread, 64, 1, &out, &len, &err) == SS_OK)
        ss_free(out);
    ss_tokenizer_destroy(tok);
    return 0;
}
