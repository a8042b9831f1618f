/* json_guide.h — JSON mode's grammar: a byte-at-a-time recogniser of one JSON object (RFC 8259), free or
 * following a compiled schema, that says whether a byte may come next, so that generated text stays a prefix of
 * a valid object, and when it is whole. */
#ifndef SS_JSON_GUIDE_H
#define SS_JSON_GUIDE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "serve/json_schema.h"

/* Deepest nesting of objects and arrays (the top-level object counts 1). */
#define SS_JSON_MAX_DEPTH 64
/* Whitespace outside strings, between two tokens of JSON: nothing, one space, or one line break ("\n" or
 * "\r\n") followed by at most SS_JSON_MAX_INDENT spaces and tabs (indentation 4 at depth 8 fits). A weak model
 * that would pad with blank lines or long runs of spaces must write JSON instead (as llama.cpp's JSON grammar
 * does). */
#define SS_JSON_MAX_INDENT 32

/* The recogniser's whole state: a plain value, copied freely (80 bytes). The schema it follows is not in it:
 * every call takes it. */
typedef struct ss_json_state {
    uint64_t stack;     /* bit d: the container at depth d+1 is an object (1) or an array (0) */
    uint16_t ws;        /* the whitespace run so far: 0 none, 1 a space, 2 "\r", 3 + k a line break and k indents */
    uint16_t value;     /* the node of the value that comes next (after ':' or ',' or '[') */
    uint16_t set;       /* a key or enum literal being matched: its set, */
    uint16_t set_lo;    /* the literals still possible, */
    uint16_t set_hi;
    uint16_t set_pos;   /* and the bytes matched */
    uint8_t depth;      /* open containers */
    uint8_t sdepth;     /* of which the outermost sdepth follow a schema node (the rest hold free JSON) */
    uint8_t mode;       /* where in the grammar (json_guide.c's modes) */
    uint8_t aux;        /* literal: bytes matched; \u escape: hex digits seen */
    uint8_t lit;        /* literal: which of true / false / null */
    uint8_t key;        /* the string being read is an object's key */
    uint8_t need;       /* UTF-8 continuation bytes still due inside a string */
    uint8_t lo, hi;     /* the range of the next continuation byte */
    uint8_t int_only;   /* the number being read is an integer */
    uint16_t node[SS_JSON_SCHEMA_MAX_DEPTH]; /* the schema frames' nodes */
    uint8_t pidx[SS_JSON_SCHEMA_MAX_DEPTH];  /* object frames: properties passed */
} ss_json_state;

/* *dst = *src, but only the schema frames in use (the walk over a vocabulary copies a state for every byte). */
static inline void ss_json_state_copy(ss_json_state *dst, const ss_json_state *src)
{
    memcpy(dst, src, offsetof(ss_json_state, node));
    memcpy(dst->node, src->node, src->sdepth * sizeof src->node[0]);
    memcpy(dst->pidx, src->pidx, src->sdepth * sizeof src->pidx[0]);
}

/* The state before any output under schema sc (ss_json_schema_any_object() for plain JSON mode; sc is
 * borrowed by every call and must not change): whitespace, then '{'. */
void ss_json_init(ss_json_state *s, const ss_json_schema *sc);
/* Feeds byte c: 1 and s advanced when c may come next; 0 when it may not (s is then unspecified: feed a
 * copy when the caller needs the old state). */
int ss_json_push(const ss_json_schema *sc, ss_json_state *s, uint8_t c);
/* Feeds n bytes; 1 when all were accepted. */
int ss_json_push_bytes(const ss_json_schema *sc, ss_json_state *s, const uint8_t *p, size_t n);
/* 1 when the top-level object has been closed (nothing may follow). */
int ss_json_done(const ss_json_state *s);
/* 1 inside a string whose contents are free (a key or enum being matched is not), its escapes included. */
int ss_json_in_string(const ss_json_state *s);
/* 1 inside such a string between two characters (not inside an escape or a UTF-8 sequence): what may follow
 * then depends on nothing but the bytes (and, for a '"' that ends the string, on what the string is). */
int ss_json_between_chars(const ss_json_state *s);

#endif
