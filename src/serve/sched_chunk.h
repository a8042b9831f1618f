/* sched_chunk.h — prompt chunks beside decoding streams: the tokens a chunk may take and what it charges against
 * a step's token budget when its attention counts too (serve --prefill-attention-budget). */
#ifndef SS_SCHED_CHUNK_H
#define SS_SCHED_CHUNK_H

#include <stdint.h>

/* keys: the context length at which a prompt token's attention costs what its projections do (0 or less: the
 * attention is not counted and a chunk charges its tokens); decoding: sequences decode in the same step.
 * What a chunk of n tokens from position pos charges (at most budget). */
int32_t ss_chunk_cost(double keys, int decoding, int64_t pos, int32_t n, int32_t budget);
/* The largest chunk from pos, of at most `left` tokens, that fits budget (at least 16 tokens, so that a prompt
 * advances); *cost: what it charges. */
int32_t ss_chunk_fit(double keys, int decoding, int64_t pos, int32_t left, int32_t budget, int32_t *cost);

#endif
