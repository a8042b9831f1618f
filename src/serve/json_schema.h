/* json_schema.h — JSON mode's schemas: the part of JSON Schema that structured outputs use (types, ordered
 * properties, required, items, enum/const, anyOf and type lists told apart by their first byte, local $ref),
 * compiled into the node table that the grammar (json_guide.c) follows. */
#ifndef SS_JSON_SCHEMA_H
#define SS_JSON_SCHEMA_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/status.h"

#define SS_JSON_SCHEMA_MAX_NODES 4096 /* nodes of one schema (every subschema, type of a list, $ref target) */
#define SS_JSON_SCHEMA_MAX_PROPS 255  /* properties of one object */
#define SS_JSON_SCHEMA_MAX_DEPTH 16   /* objects and arrays with a schema nested in one another in the output */
#define SS_JSON_NODE_ANY 0            /* every schema's node 0: any JSON value */

typedef enum ss_json_kind {
    SS_JK_ANY = 0, /* any JSON value */
    SS_JK_OBJECT,  /* the properties in the schema's order, each at most once, the required ones always */
    SS_JK_ARRAY,   /* any number of items */
    SS_JK_STRING,
    SS_JK_NUMBER,
    SS_JK_INTEGER, /* a number without fraction or exponent */
    SS_JK_BOOLEAN,
    SS_JK_NULL,
    SS_JK_ENUM,  /* one of a set of values, as JSON texts without whitespace */
    SS_JK_UNION, /* one of several nodes whose values begin with different bytes */
} ss_json_kind;

/* A value's first byte, by class: { [ " number t/f n. */
enum { SS_JC_OBJECT = 0, SS_JC_ARRAY, SS_JC_STRING, SS_JC_NUMBER, SS_JC_BOOL, SS_JC_NULL, SS_JC_COUNT };

/* A literal of a set: its bytes, and for an object's keys the property it names. */
typedef struct ss_json_lit {
    const uint8_t *p;
    uint16_t len;
    uint16_t prop;
} ss_json_lit;

/* Literals sorted by bytes (no two equal): a key set or an enum. */
typedef struct ss_json_set {
    int32_t n;
    const ss_json_lit *lits;
} ss_json_set;

typedef struct ss_json_node {
    ss_json_kind kind;
    int32_t n_props;          /* OBJECT: properties */
    int free;                 /* OBJECT without properties that takes any: its contents are free JSON */
    int32_t addl;             /* OBJECT without properties: the node of every value (any keys), -1: none (then
                               * free, or no key at all) */
    const int32_t *prop;      /* OBJECT: [n_props] the properties' nodes, in the schema's order */
    int32_t keys;             /* OBJECT: the set of its keys (each literal's prop: its index) */
    const int32_t *next_req;  /* OBJECT: [n_props + 1] the first required property at index >= i (n_props: none);
                               * after i properties, those of i .. next_req[i] may come next */
    int32_t items;            /* ARRAY: the items' node */
    int32_t set;              /* ENUM: its literals */
    int32_t branch[SS_JC_COUNT]; /* UNION: the node for each first-byte class, -1: none */
    int32_t min_depth;        /* the fewest schema objects/arrays a value of it opens nested (json_schema.c) */
} ss_json_node;

/* A compiled schema: read-only once made, shared by reference count (the choices of one request). */
typedef struct ss_json_schema ss_json_schema;

/* Compiles schema (borrowed; read only during the call). The top level must describe an object. Keywords that
 * constrain values beyond this subset (pattern, format, minimum, minLength, minItems, oneOf, allOf, ...), and
 * combinations it cannot enforce (keywords beside anyOf, required objects nested past SS_JSON_SCHEMA_MAX_DEPTH)
 * are refused with SS_ERR_UNSUPPORTED naming where (e.g. "properties.age.minimum"); annotations (title,
 * description, default, examples, $schema, $id, $comment) and unknown keywords are ignored. The result holds one
 * reference: ss_json_schema_destroy drops it. */
ss_status ss_json_schema_compile(const cJSON *schema, ss_json_schema **out, ss_err *err);
/* One more reference to sc (thread-safe); returns sc. */
ss_json_schema *ss_json_schema_ref(ss_json_schema *sc);
/* Drops a reference; the last one frees sc (thread-safe). */
void ss_json_schema_destroy(ss_json_schema *sc);

/* JSON mode without a schema: any object. A static schema: never destroyed. */
const ss_json_schema *ss_json_schema_any_object(void);

/* The root node (an object), a node by id, a set by id (ids from nodes). Borrowed from sc. */
int32_t ss_json_schema_root(const ss_json_schema *sc);
const ss_json_node *ss_json_schema_node(const ss_json_schema *sc, int32_t id);
const ss_json_set *ss_json_schema_set(const ss_json_schema *sc, int32_t id);

/* The class of a value's first byte c (SS_JC_*), or -1 when no value begins with it. */
int ss_json_first_class(uint8_t c);

#endif
