/* guide_vocab.h — the vocabulary as byte strings in byte order, for guided decoding: which tokens a JSON
 * guide's state accepts next (a bit mask over the model's vocabulary), found in one pass that shares prefixes;
 * and one output's guide, its state and next mask kept together. */
#ifndef SS_GUIDE_VOCAB_H
#define SS_GUIDE_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "serve/json_guide.h"
#include "tokenizer/tokenizer.h"

/* Tokens longer than this many bytes are never allowed (no real vocabulary has them). */
#define SS_GUIDE_MAX_TOKEN_BYTES 1024

typedef struct ss_guide_vocab ss_guide_vocab;

/* Reads every token of tok (special tokens and tokens without bytes are left out: a guide never allows them)
 * for a model of model_vocab ids (ids past the tokenizer's are never allowed). Borrows nothing: tok may go
 * after. Caller destroys. */
ss_status ss_guide_vocab_create(const ss_tokenizer *tok, int32_t model_vocab, ss_guide_vocab **out, ss_err *err);
void ss_guide_vocab_destroy(ss_guide_vocab *v);

/* 32-bit words of a mask: (model_vocab + 31) / 32. */
int32_t ss_guide_vocab_words(const ss_guide_vocab *v);

/* Sets bit t (word t / 32, bit t % 32) of mask[ss_guide_vocab_words] for every token t all of whose bytes s
 * accepts under schema sc, clears the others; returns how many are set. Uses v's scratch: one call at a time
 * per v. */
int64_t ss_guide_vocab_mask(ss_guide_vocab *v, const ss_json_schema *sc, const ss_json_state *s, uint32_t *mask);

/* The same with the caller's scratch of ss_guide_vocab_scratch_len states: masks of one v may then be made on
 * several threads at once (v is only read). */
int64_t ss_guide_vocab_mask_into(const ss_guide_vocab *v, const ss_json_schema *sc, const ss_json_state *s,
                                 uint32_t *mask, ss_json_state *scratch);
size_t ss_guide_vocab_scratch_len(const ss_guide_vocab *v);

/* The bytes token id adds to a text after other tokens (borrowed from v), or NULL with *len 0 for a token
 * that is never allowed. */
const uint8_t *ss_guide_vocab_bytes(const ss_guide_vocab *v, int32_t id, size_t *len);

/* One output in JSON mode: the schema it follows (borrowed), the grammar's state after its tokens, and the tokens
 * its next sample may take. */
typedef struct ss_guide {
    const ss_json_schema *schema;
    ss_json_state st;
    uint32_t *allow; /* [ss_guide_vocab_words], owned */
    int32_t last;    /* the last token fed (for messages) */
} ss_guide;

/* Starts g for an empty output under sc (ss_json_schema_any_object() for plain JSON mode) with its first mask.
 * Fails when no token can begin the object. ss_guide_clear releases g, also after a failure. */
ss_status ss_guide_start(ss_guide *g, ss_guide_vocab *v, const ss_json_schema *sc, ss_err *err);
/* Feeds token tok; when the object is not whole yet, makes the next mask. Fails naming tok when it does not
 * continue the object, or when no token can follow it. */
ss_status ss_guide_advance(ss_guide *g, ss_guide_vocab *v, int32_t tok, ss_err *err);
/* The same in two halves, so that the masks of many outputs can be made on several threads: feed (fails when
 * tok does not continue the object), then, unless done, remask with a scratch of ss_guide_vocab_scratch_len
 * states (fails when no token can follow). */
ss_status ss_guide_feed(ss_guide *g, const ss_guide_vocab *v, int32_t tok, ss_err *err);
ss_status ss_guide_remask(ss_guide *g, const ss_guide_vocab *v, ss_json_state *scratch, ss_err *err);
/* 1 once the object is whole. */
int ss_guide_done(const ss_guide *g);
void ss_guide_clear(ss_guide *g);

/* The next masks of many outputs at once (a step's guided sequences), on several threads, each with its own
 * scratch; v and the schemas are only read. */
typedef struct ss_guide_batch ss_guide_batch;

/* For up to max_guides outputs of v on `threads` threads (0: half the cores, at most 8, and one below 4 cores).
 * Caller destroys. */
ss_status ss_guide_batch_create(const ss_guide_vocab *v, int threads, int32_t max_guides, ss_guide_batch **out,
                                ss_err *err);
void ss_guide_batch_destroy(ss_guide_batch *b);
int ss_guide_batch_threads(const ss_guide_batch *b);
/* ss_guide_remask on g[0..n) (n <= max_guides, each fed its token and not done); returns how many failed, whose
 * status and message ss_guide_batch_error gives (valid until the next call). */
int32_t ss_guide_batch_remask(ss_guide_batch *b, const ss_guide_vocab *v, ss_guide *const *g, int32_t n);
ss_status ss_guide_batch_error(const ss_guide_batch *b, int32_t i, const char **msg);

#endif
