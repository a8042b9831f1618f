/* tool_calls.h — OpenAI function calling over the model's chat template: the request's tools and tool_choice, the
 * schema that forces a call, the calls parsed out of the model's text (a stream's view of them: tool_stream.h). */
#ifndef SS_TOOL_CALLS_H
#define SS_TOOL_CALLS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

struct cJSON;

/* The formats' markers in the model's text. */
#define SS_TOOL_TAG "<tool_call>"
#define SS_TOOL_END "</tool_call>"
#define SS_PYTHON_TAG "<|python_tag|>"
#define SS_MISTRAL_TAG "[TOOL_CALLS]"
#define SS_MISTRAL_ARGS "[ARGS]"
#define SS_MISTRAL_CALL_ID "[CALL_ID]"
/* DeepSeek's markers: full-width bars (U+FF5C) around words joined by U+2581 */
#define SS_DS_BAR "\xef\xbd\x9c"
#define SS_DS_SP "\xe2\x96\x81"
#define SS_DS_CALLS_BEGIN "<" SS_DS_BAR "tool" SS_DS_SP "calls" SS_DS_SP "begin" SS_DS_BAR ">"
#define SS_DS_CALLS_END "<" SS_DS_BAR "tool" SS_DS_SP "calls" SS_DS_SP "end" SS_DS_BAR ">"
#define SS_DS_CALL_BEGIN "<" SS_DS_BAR "tool" SS_DS_SP "call" SS_DS_SP "begin" SS_DS_BAR ">"
#define SS_DS_CALL_END "<" SS_DS_BAR "tool" SS_DS_SP "call" SS_DS_SP "end" SS_DS_BAR ">"
#define SS_DS_SEP "<" SS_DS_BAR "tool" SS_DS_SP "sep" SS_DS_BAR ">"

/* How a model writes its calls, told by its chat template:
 * - HERMES (Qwen 2.5 / 3, Hermes): `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks after any text;
 * - JSON (Llama 3.1 / 3.2 / 3.3): the whole answer is `{"name": ..., "parameters": {...}}` (several joined by ";"),
 *   after an optional `<|python_tag|>`;
 * - MISTRAL (Mistral Large 2, Nemo: tokenizer v3): the whole answer is `[TOOL_CALLS] [{"name": ..., "arguments":
 *   {...}}, ...]` (the marker is a special token, often left out of the text); call ids are 9 letters and digits,
 *   which these templates require of the calls sent back;
 * - MISTRAL_V11 (Mistral Small 3.1 / 3.2, Devstral, Magistral: tokenizer v11+, whose templates write `[ARGS]`): text,
 *   then `[TOOL_CALLS]name[ARGS]{...}` for each call (`[CALL_ID]id` may come before `[ARGS]`); the markers are special
 *   tokens, often left out of the text, and then the whole answer is `name{...}name{...}`; ids as MISTRAL's;
 * - DEEPSEEK (DeepSeek V3, R1; V3.1): text, then <calls_begin>, the calls, <calls_end> (the SS_DS_ markers above;
 *   <calls_end> may be left out), each call <call_begin>function<sep>name\n```json\n{...}\n```<call_end> (V3.1:
 *   <call_begin>name<sep>{...}<call_end>: told apart, call by call, by what follows <sep>). */
typedef enum ss_tool_format {
    SS_TOOL_FORMAT_NONE = 0, /* the template never reads `tools`: function calling is refused */
    SS_TOOL_FORMAT_JSON,
    SS_TOOL_FORMAT_HERMES,
    SS_TOOL_FORMAT_MISTRAL,
    SS_TOOL_FORMAT_MISTRAL_V11,
    SS_TOOL_FORMAT_DEEPSEEK,
} ss_tool_format;

/* The format of the model whose chat template is tpl (NULL: none). */
ss_tool_format ss_tool_format_of_template(const char *tpl);
/* How fmt writes calls, in words (for the log: "as [TOOL_CALLS] lists", "off"...); a static string. */
const char *ss_tool_format_str(ss_tool_format fmt);
/* Whether c may be part of a tool's name (letters, digits, '_', '-', '.'). */
int ss_tool_name_char(char c);

typedef enum ss_tool_choice {
    SS_TOOL_CHOICE_NONE = 0, /* no tools, or tool_choice "none": the answer is text */
    SS_TOOL_CHOICE_AUTO,     /* the model decides; its calls are parsed out of the text */
    SS_TOOL_CHOICE_REQUIRED, /* one call of some tool, forced by a JSON schema */
    SS_TOOL_CHOICE_NAMED,    /* one call of the named tool, forced likewise */
} ss_tool_choice;

/* Checks a request's `tools` (a list of {"type": "function", "function": {"name", "description", "parameters"}}:
 * names of [A-Za-z0-9_.-], 1..64 bytes, distinct; at most 128 tools) and `tool_choice` ("none", "auto", "required"
 * or {"type": "function", "function": {"name": ...}} naming one of them). *choice and *named (a pointer into tools,
 * NULL unless NAMED) are set; errors are written to msg (cap bytes) with the parameter's name in *param. */
ss_status ss_tools_check(const struct cJSON *tools, const struct cJSON *tool_choice, ss_tool_choice *choice,
                         const char **named, const char **param, char *msg, size_t cap);

/* 1 when tools (checked by ss_tools_check) holds a function named name. */
int ss_tools_has(const struct cJSON *tools, const char *name);
/* 1 when a function of tools has a name that begins with s[0..n). */
int ss_tools_has_prefix(const struct cJSON *tools, const char *s, size_t n);

/* The JSON schema an answer must follow when a call is forced, into *out (a new cJSON, caller deletes): {"name": the
 * tool's name, and "parameters" (JSON) or "arguments" (the other formats): its parameters' schema ({"type": "object"}
 * without one), whose "$defs" / "definitions" move up to the top level, where their "$ref"s resolve}. With named NULL
 * and several tools, the name is one of theirs and the arguments any object (the JSON guide's top level is one object
 * schema, not a union). SS_ERR_UNSUPPORTED with msg (cap bytes) when the parameters hold another "$ref" (such as "#"),
 * SS_ERR_NOMEM. */
ss_status ss_tools_forced_schema(const struct cJSON *tools, const char *named, ss_tool_format fmt, struct cJSON **out,
                                 char *msg, size_t cap);

typedef struct ss_tool_call {
    char *name;      /* owned */
    char *arguments; /* the arguments as JSON text (owned) */
    char id[48];     /* set by ss_tool_calls_name */
} ss_tool_call;

typedef struct ss_tool_calls {
    int32_t n;
    ss_tool_call *calls; /* [n], owned */
    size_t content_len;  /* the text before the first call (trailing white space left out): the answer's content */
} ss_tool_calls;

/* Parses a model's answer text[0..len) in format fmt (forced: the answer is one JSON call object, as the forced
 * schema made it). Calls must name one of tools; an answer that is not wholly calls in the format (after the text
 * before them, for HERMES, DEEPSEEK and MISTRAL_V11 with its marker) gives n = 0: it is text. At most max_calls are
 * kept (parallel_tool_calls false: 1). Out is cleared first; SS_ERR_NOMEM is the only error. */
ss_status ss_tool_calls_parse(ss_tool_format fmt, int forced, const char *text, size_t len, const struct cJSON *tools,
                              int32_t max_calls, ss_tool_calls *out);
void ss_tool_calls_free(ss_tool_calls *c);
/* Names c's calls for choice `choice` of the response whose id is response_id ("chatcmpl-<hex>"): "call_<hex>_<choice>_
 * <i>", or for MISTRAL and MISTRAL_V11 9 letters and digits drawn from the same (a hash: distinct within a response
 * but for a 62^-9 chance). */
void ss_tool_calls_name(ss_tool_calls *c, ss_tool_format fmt, const char *response_id, int32_t choice);
/* The id ss_tool_calls_name gives call i, into id (NUL-terminated). */
void ss_tool_call_id(ss_tool_format fmt, const char *response_id, int32_t choice, int32_t i, char id[48]);

#endif
