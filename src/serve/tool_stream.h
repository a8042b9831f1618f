/* tool_stream.h — a chat stream's function calls as the model writes them: the answer's text, fed piece by piece,
 * comes out as events (content, a call's start with its id and name, the next piece of its arguments), each sent only
 * once it is certain to be what the non-streamed answer says. */
#ifndef SS_TOOL_STREAM_H
#define SS_TOOL_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "serve/tool_calls.h"

struct cJSON;

typedef struct ss_tool_stream ss_tool_stream;

typedef struct ss_tool_stream_params {
    ss_tool_format fmt;
    int forced;                /* tool_choice required or named: the answer is a bare call object (JSON-mode grammar) */
    const struct cJSON *tools; /* the request's tools (borrowed for the stream's life) */
    int32_t max_calls;         /* as ss_tool_calls_parse's (parallel_tool_calls false: 1) */
    const char *response_id;   /* "chatcmpl-<hex>" (copied): call ids as ss_tool_calls_name gives them */
    int32_t choice;
    size_t max_text; /* the answer's text kept (for the end's parse) at most, bytes: beyond it SS_ERR_CAPACITY */
} ss_tool_stream_params;

/* fmt NONE (everything is content), max_calls 64, max_text 64 MiB, the rest zero. */
ss_tool_stream_params ss_tool_stream_default_params(void);

typedef enum ss_tool_event_kind {
    SS_TOOL_EVENT_CONTENT = 1, /* text: the next piece of the answer's content */
    SS_TOOL_EVENT_CALL,        /* call `index` begins: id, name (its arguments so far: "") */
    SS_TOOL_EVENT_ARGS,        /* text: the next piece of call `index`'s arguments */
} ss_tool_event_kind;

/* Strings borrowed from the stream until its next feed, finish or destroy. */
typedef struct ss_tool_event {
    ss_tool_event_kind kind;
    int32_t index;
    const char *id, *name; /* CALL */
    const char *text;      /* CONTENT, ARGS: len bytes (not NUL-terminated) */
    size_t len;
} ss_tool_event;

typedef enum ss_tool_outcome {
    SS_TOOL_OUTCOME_OPEN = 0, /* not finished */
    SS_TOOL_OUTCOME_TEXT,     /* the answer is text, all sent as content: finish_reason is the model's */
    SS_TOOL_OUTCOME_CALLS,    /* the answer is calls (after its content): finish_reason "tool_calls" */
    SS_TOOL_OUTCOME_BROKEN,   /* a call had begun, but the answer is not calls after all (a call malformed, cut
                               * short by max_tokens, or text after it): the text not sent as content yet follows as
                               * content, and finish_reason is the model's ("stop" or "length") */
} ss_tool_outcome;

/* A stream for one choice's answer; *out destroyed by ss_tool_stream_destroy. SS_ERR_NOMEM. */
ss_status ss_tool_stream_create(const ss_tool_stream_params *p, ss_tool_stream **out);
void ss_tool_stream_destroy(ss_tool_stream *ts);

/* The answer's next len bytes of text; then take the events with ss_tool_stream_next. SS_ERR_NOMEM,
 * SS_ERR_CAPACITY (beyond max_text), SS_ERR_INVALID_ARG after finish. */
ss_status ss_tool_stream_feed(ss_tool_stream *ts, const char *text, size_t len);

/* The answer ended: ss_tool_calls_parse reads the whole text, and has the last word; the events still to come say the
 * rest of it (content, calls and arguments not sent yet). SS_ERR_NOMEM. A second call repeats the outcome. */
ss_status ss_tool_stream_finish(ss_tool_stream *ts, ss_tool_outcome *outcome);

/* The next event into *ev: 1, or 0 when there is none until more text is fed (or, once finished, at all). Events come
 * in this order: content, then for each call in turn its CALL and its ARGS (BROKEN: then the rest as content).
 * Concatenated, the content is the non-streamed answer's content for the same text and, when the outcome is CALLS,
 * the ARGS of each call its "arguments", byte for byte. */
int ss_tool_stream_next(ss_tool_stream *ts, ss_tool_event *ev);

/* The calls ss_tool_stream_finish parsed (named; n = 0 unless the outcome is CALLS), borrowed until destroy. */
const ss_tool_calls *ss_tool_stream_calls(const ss_tool_stream *ts);

#endif
