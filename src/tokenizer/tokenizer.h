/* tokenizer.h — Hugging Face tokenizer.json (BPE: byte-level and SentencePiece style) encode/decode,
 * plus an incremental detokenizer for streaming. Results match the `tokenizers` library exactly.
 * A loaded tokenizer is immutable: encode/decode may run on one tokenizer from many threads at once. */
#ifndef SS_TOKENIZER_H
#define SS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Largest text (bytes) one encode call accepts; larger gives SS_ERR_CAPACITY. */
#define SS_TOKENIZER_MAX_TEXT ((size_t)1 << 30)

typedef struct ss_tokenizer ss_tokenizer;

/* Loads <dir>/tokenizer.json and (optional) <dir>/tokenizer_config.json. Caller destroys.
 * Components the tokenizer cannot reproduce exactly are refused with SS_ERR_UNSUPPORTED naming
 * their type; errors name the file. */
ss_status ss_tokenizer_load(const char *dir, ss_tokenizer **out, ss_err *err);
/* Same from a tokenizer.json path and optional tokenizer_config.json path (may be NULL). */
ss_status ss_tokenizer_load_files(const char *tokenizer_json, const char *config_json, ss_tokenizer **out,
                                  ss_err *err);
/* Same from tokenizer.json's text in memory (json[0..len), not owned); name stands for the file in errors. */
ss_status ss_tokenizer_load_json(const char *json, size_t len, const char *name, ss_tokenizer **out, ss_err *err);
void ss_tokenizer_destroy(ss_tokenizer *tok);

/* Encodes len bytes of UTF-8 text. add_special: apply the post-processor (BOS etc.).
 * *ids is allocated with ss_malloc (caller ss_free's; may be NULL when *n_ids is 0).
 * Invalid UTF-8 is rejected with SS_ERR_INVALID_ARG naming the byte offset (the reference only
 * ever sees valid Unicode strings). Thread-safe on a shared tokenizer. */
ss_status ss_tokenizer_encode(const ss_tokenizer *tok, const char *text, size_t len, int add_special,
                              int32_t **ids, size_t *n_ids, ss_err *err);
/* Decodes ids to UTF-8 (skip_special: drop special added tokens). *text NUL-terminated, caller ss_free's.
 * An id outside [0, vocab_size) gives SS_ERR_INVALID_ARG; ids inside that range with no token are
 * skipped, as the reference does. */
ss_status ss_tokenizer_decode(const ss_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                              char **text, size_t *len, ss_err *err);
/* The bytes one token decodes to alone (as the first token of a text), without the UTF-8 repair: a token
 * that holds part of a character gives those bytes, not U+FFFD (OpenAI's logprobs `bytes`, text offsets).
 * *bytes NUL-terminated, caller ss_free's; an id outside [0, vocab_size) gives SS_ERR_INVALID_ARG. */
ss_status ss_tokenizer_token_bytes(const ss_tokenizer *tok, int32_t id, char **bytes, size_t *len, ss_err *err);
/* The same for a token that follows others: a decoder that drops the text's leading space (SentencePiece's
 * "Strip", Metaspace's prepend) keeps it, as in the middle of a decoded text. */
ss_status ss_tokenizer_token_bytes_mid(const ss_tokenizer *tok, int32_t id, char **bytes, size_t *len, ss_err *err);
int32_t ss_tokenizer_vocab_size(const ss_tokenizer *tok);                      /* max id + 1 */
int32_t ss_tokenizer_token_to_id(const ss_tokenizer *tok, const char *token); /* -1 if unknown */
int ss_tokenizer_is_special(const ss_tokenizer *tok, int32_t id);

/* From tokenizer_config.json (NULL when absent); borrowed, valid until destroy. bos/eos resolve
 * AddedToken objects to their content. A chat_template given as a list of {name, template} yields
 * the one named "default". */
const char *ss_tokenizer_chat_template(const ss_tokenizer *tok);
const char *ss_tokenizer_bos_token(const ss_tokenizer *tok);
const char *ss_tokenizer_eos_token(const ss_tokenizer *tok);

/* Incremental detokenizer: text pieces only at UTF-8 character boundaries, never a U+FFFD for a
 * character split across tokens; the concatenation of all pieces (pushes + flush) equals
 * ss_tokenizer_decode of all pushed ids. One per stream; not thread-safe; borrows tok. */
typedef struct ss_detok ss_detok;
ss_status ss_detok_create(const ss_tokenizer *tok, int skip_special, ss_detok **out, ss_err *err);
/* Pushes one id; *piece (may be empty, never NULL on success) is borrowed until the next call. */
ss_status ss_detok_push(ss_detok *d, int32_t id, const char **piece, size_t *len, ss_err *err);
/* Returns whatever is still held (incomplete UTF-8 is emitted as the full decode would). */
ss_status ss_detok_flush(ss_detok *d, const char **piece, size_t *len, ss_err *err);
void ss_detok_destroy(ss_detok *d);

#endif
