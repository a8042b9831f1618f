/* sched_spec.h — speculative decoding's arithmetic for the scheduler: the draft tokens a step has room for (and a long
 * context), a sequence's drafts written after its tokens (prompt lookup: spec_ngram.h), and how many of them its samples confirm. */
#ifndef SS_SCHED_SPEC_H
#define SS_SCHED_SPEC_H

#include <stdint.h>

#include "model/config.h"

/* A draft row reads its sequence's keys and values as a decode row does (the step's rows do not share that read), so
 * at long contexts drafts cost more than the weights they save reading. The draft rows times context keys within which
 * those reads stay under a quarter of the weights' (in elements: for weights and cache of one element type, bytes), or
 * under 64 Mi elements for a small model, all of a step's drafts together: one sequence of n tokens may have at most
 * ss_spec_keys(cfg) / n drafts (Llama-3-8B: 29k, so 7 at 4k tokens, 3 at 8k, none past 29k), four share that. */
double ss_spec_keys(const ss_model_config *cfg);

/* Where the replica's attention reads a sequence's keys once for a tile of up to `tile` of its tokens (its token and
 * drafts; the scheduler's spec_tile), n drafts add n / tile reads of its n_ctx keys: the keys those drafts add, and
 * the most of k drafts that add no more than keys_left (the step's share of ss_spec_keys still unspent). */
double ss_spec_draft_keys(int32_t n, int32_t n_ctx, int32_t tile);
int32_t ss_spec_keys_room(int32_t k, double keys_left, int32_t n_ctx, int32_t tile);

/* The most draft tokens each of n_running sequences may have in a step: spec_tokens while at most spec_max_running
 * run, within max_entries plan entries and max_step_tokens tokens (each sequence keeps its own entry and token). */
int32_t ss_spec_room(int32_t spec_tokens, int32_t spec_max_running, int32_t n_running, int32_t max_entries,
                     int32_t max_step_tokens);

/* Writes up to k draft tokens for the sequence (*tokens)[0..n) after its end, at (*tokens)[n..], growing the buffer
 * (*tokens, of *cap entries; realloc'd, still owned by the caller) to hold them. Returns the drafts written: 0 when
 * nothing matches, or when the buffer cannot grow (no guess then). */
int32_t ss_spec_propose(int32_t **tokens, int32_t *cap, int32_t n, int32_t k);

/* How many of the n drafts the samples confirm: sampled[i] is the token sampled after draft i - 1 (after the
 * sequence's own last token for i = 0); the drafts up to the first sample that differs. */
int32_t ss_spec_confirmed(const int32_t *sampled, const int32_t *drafts, int32_t n);

/* A sequence's drafting rhythm: after a step in which none of its drafts was confirmed, it drafts again only after
 * 1, 2, then SS_SPEC_PAUSE_MAX steps without (doubling with each such step in a row); a confirmed draft resets it.
 * Text whose guesses fail then costs a wider step now and then instead of every step, and while every sequence pauses,
 * steps are planned ahead again. Zeroed: drafts at once. */
typedef struct ss_spec_pace {
    int32_t misses; /* such steps in a row */
    int32_t pause;  /* steps left without drafts */
    int32_t guess1; /* while paused: the token prompt lookup expects next, plus 1 (0: none); if it comes, the text has
                     * started to repeat and the pause ends */
    int32_t len;    /* with adaptive lengths (ss_spec_pace_len): drafts it may have next (0: as many as allowed) */
} ss_spec_pace;

#define SS_SPEC_PAUSE_MAX 4

/* Whether the sequence may draft in this step (a paused one counts the step as one without). */
int ss_spec_pace_draft(ss_spec_pace *p);
/* The outcome of a step with drafts: how many were confirmed. */
void ss_spec_pace_after(ss_spec_pace *p, int32_t confirmed);
/* While paused: tok is the token prompt lookup expects after this step's (watched by ss_spec_pace_token). */
void ss_spec_pace_guess(ss_spec_pace *p, int32_t tok);
/* The token a step without drafts sampled: the pause ends when it is the one guessed. */
void ss_spec_pace_token(ss_spec_pace *p, int32_t tok);
/* Adaptive draft lengths: after a step whose `drafted` drafts had `confirmed` confirmed, the next step may have
 * twice as many as it could this time (at most k_max) when all were, else one more than were confirmed. A run of
 * text that prompt lookup keeps guessing is soon verified k_max at a time; where it fails, each step verifies a
 * draft or two, a row or two more than without (the step's cost grows with its rows). */
void ss_spec_pace_len(ss_spec_pace *p, int32_t drafted, int32_t confirmed, int32_t k_max);

#endif
