/* chat_template.h — renders Hugging Face chat templates (a Jinja2 subset) the way
 * transformers.apply_chat_template does: trim_blocks + lstrip_blocks, raise_exception, strftime_now,
 * a json.dumps-style tojson, loop controls. Anything outside the subset is a clear error. */
#ifndef SS_CHAT_TEMPLATE_H
#define SS_CHAT_TEMPLATE_H

#include <stddef.h>

#include "core/status.h"

struct cJSON;

/* Hard caps: each one exceeded is an SS_ERR_CAPACITY error, so no template can hang or exhaust memory. */
#define SS_TEMPLATE_MAX_SOURCE ((size_t)1 << 20)      /* template source bytes */
#define SS_TEMPLATE_MAX_OUTPUT ((size_t)16 << 20)     /* bytes of any one rendered text or string */
#define SS_TEMPLATE_MAX_CREATED ((size_t)256 << 20)   /* bytes of strings/lists created by one render */
#define SS_TEMPLATE_MAX_LOOP_ITERS ((int64_t)1000000) /* loop iterations (all loops) in one render */
#define SS_TEMPLATE_MAX_STEPS ((int64_t)20000000)     /* evaluations in one render; scans count 1 per item, 16 bytes */
#define SS_TEMPLATE_MAX_CALL_DEPTH 48                 /* nested macro calls */
#define SS_TEMPLATE_MAX_NESTING 96                    /* nesting of blocks and expressions in the source */

typedef struct ss_template ss_template;

/* Compiles template source (len bytes, need not be NUL-terminated). name is used in errors (copied;
 * NULL -> "template"). On success *out is a new template the caller destroys with ss_template_destroy.
 * A compiled template is read-only: several threads may render it at once. */
ss_status ss_template_compile(const char *src, size_t len, const char *name, ss_template **out, ss_err *err);
void ss_template_destroy(ss_template *t);

/* Renders with a JSON object as the variables (vars borrowed; NULL = no variables).
 * *out is NUL-terminated and ss_malloc'd (caller ss_free's); *out_len excludes the NUL (out_len may be NULL). */
ss_status ss_template_render(const ss_template *t, const struct cJSON *vars, char **out, size_t *out_len, ss_err *err);

/* Chat convenience: messages = JSON array of {role, content, ...} (borrowed); sets messages,
 * add_generation_prompt, bos_token, eos_token (NULL -> undefined), tools (a JSON array, borrowed; NULL -> none, as
 * transformers passes it when no tools are given) and documents = none. Output as for ss_template_render. */
ss_status ss_chat_template_apply(const ss_template *t, const struct cJSON *messages, const struct cJSON *tools,
                                 int add_generation_prompt, const char *bos_token, const char *eos_token, char **out,
                                 size_t *out_len, ss_err *err);

#endif
