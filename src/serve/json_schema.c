/* json_schema.c — compiles the structured-outputs subset of JSON Schema into JSON mode's node table: one node
 * per subschema, a key set per object, enum literals as JSON texts; refuses what it cannot enforce. */
#include "serve/json_schema.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define SCHEMA_MAX_REFS 256
#define SCHEMA_MAX_NEST 64    /* subschemas inside one another (not through $ref) */
#define SCHEMA_MAX_LIT 1024   /* bytes of one key or enum literal */
#define SCHEMA_MAX_SETS 65535 /* key and enum sets (the grammar's state holds their ids in 16 bits) */
#define SCHEMA_MAX_FIXUPS 4096
#define SS_JK_PENDING (-1) /* a $ref target still being compiled */

struct ss_json_schema {
    atomic_int refs;
    ss_json_node *nodes;
    int32_t n_nodes, cap_nodes;
    ss_json_set *sets;
    int32_t n_sets, cap_sets;
    void **allocs; /* every other allocation (node arrays, literals), freed with the schema */
    int32_t n_allocs, cap_allocs;
    int32_t root;
};

typedef struct cctx {
    ss_json_schema *sc;
    const cJSON *doc;
    struct {
        const char *ref; /* borrowed from doc */
        int32_t id;
    } refs[SCHEMA_MAX_REFS];
    int n_refs;
    int nest;
    struct {
        int32_t u, b; /* union u takes the alternatives of union (or $ref target) b, once all are read */
        char path[128];
    } fixups[SCHEMA_MAX_FIXUPS];
    int n_fixups;
    char path[512];
    ss_err *err;
} cctx;

/* ---- allocation ---- */

static void *sc_keep(ss_json_schema *sc, void *p)
{
    if (!p)
        return NULL;
    if (sc->n_allocs == sc->cap_allocs) {
        int32_t cap = sc->cap_allocs ? sc->cap_allocs * 2 : 64;
        void **a = ss_realloc(sc->allocs, (size_t)cap * sizeof *a);
        if (!a) {
            ss_free(p);
            return NULL;
        }
        sc->allocs = a;
        sc->cap_allocs = cap;
    }
    sc->allocs[sc->n_allocs++] = p;
    return p;
}

static void *sc_alloc(ss_json_schema *sc, size_t bytes)
{
    return sc_keep(sc, ss_calloc(1, bytes ? bytes : 1));
}

/* ---- errors ---- */

static ss_status fail(cctx *c, ss_status st, const char *what)
{
    if (c->path[0])
        return ss_err_set(c->err, st, "JSON schema at '%s': %s", c->path, what);
    return ss_err_set(c->err, st, "JSON schema: %s", what);
}

static ss_status nomem(cctx *c)
{
    return fail(c, SS_ERR_NOMEM, "out of memory");
}

/* Appends ".seg" (or "seg" at the top) to the path; returns the length to restore. */
static size_t path_push(cctx *c, const char *seg)
{
    size_t n = strlen(c->path);
    snprintf(c->path + n, sizeof c->path - n, "%s%s", n ? "." : "", seg);
    return n;
}

static void path_pop(cctx *c, size_t n)
{
    c->path[n] = '\0';
}

/* ---- nodes and sets ---- */

static ss_status new_node(cctx *c, ss_json_kind kind, int32_t *id)
{
    ss_json_schema *sc = c->sc;
    if (sc->n_nodes >= SS_JSON_SCHEMA_MAX_NODES)
        return fail(c, SS_ERR_CAPACITY, "more than 4096 subschemas");
    if (sc->n_nodes == sc->cap_nodes) {
        int32_t cap = sc->cap_nodes ? sc->cap_nodes * 2 : 16;
        ss_json_node *n = ss_realloc(sc->nodes, (size_t)cap * sizeof *n);
        if (!n)
            return nomem(c);
        sc->nodes = n;
        sc->cap_nodes = cap;
    }
    ss_json_node *n = &sc->nodes[sc->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->items = n->set = n->keys = n->addl = -1;
    for (int k = 0; k < SS_JC_COUNT; k++)
        n->branch[k] = -1;
    *id = sc->n_nodes++;
    return SS_OK;
}

static int lit_cmp(const void *a, const void *b)
{
    const ss_json_lit *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->p, y->p, n);
    return r ? r : (x->len > y->len) - (x->len < y->len);
}

/* Makes a set of n literals (taken: they are kept by the schema), sorted, duplicates dropped. */
static ss_status new_set(cctx *c, ss_json_lit *lits, int32_t n, int32_t *id)
{
    ss_json_schema *sc = c->sc;
    qsort(lits, (size_t)n, sizeof *lits, lit_cmp);
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++)
        if (m == 0 || lit_cmp(&lits[m - 1], &lits[i]) != 0)
            lits[m++] = lits[i];
    if (sc->n_sets >= SCHEMA_MAX_SETS)
        return fail(c, SS_ERR_CAPACITY, "more than 65535 objects and enums");
    if (sc->n_sets == sc->cap_sets) {
        int32_t cap = sc->cap_sets ? sc->cap_sets * 2 : 16;
        ss_json_set *s = ss_realloc(sc->sets, (size_t)cap * sizeof *s);
        if (!s)
            return nomem(c);
        sc->sets = s;
        sc->cap_sets = cap;
    }
    sc->sets[sc->n_sets] = (ss_json_set){m, lits};
    *id = sc->n_sets++;
    return SS_OK;
}

/* The JSON text of v without whitespace, kept by the schema, as a literal. */
static ss_status make_lit(cctx *c, const cJSON *v, uint16_t prop, ss_json_lit *out)
{
    char *text = cJSON_PrintUnformatted(v);
    if (!text)
        return nomem(c);
    size_t len = strlen(text);
    uint8_t *p = sc_alloc(c->sc, len);
    if (p)
        memcpy(p, text, len);
    cJSON_free(text);
    if (!p)
        return nomem(c);
    if (len > SCHEMA_MAX_LIT)
        return fail(c, SS_ERR_UNSUPPORTED, "a key or enum value longer than 1024 bytes as JSON");
    *out = (ss_json_lit){p, (uint16_t)len, prop};
    return SS_OK;
}

/* The first-byte classes a node's values may have (bit SS_JC_*). */
static ss_status classes_of(cctx *c, int32_t id, unsigned *mask)
{
    const ss_json_node *n = &c->sc->nodes[id];
    switch ((int)n->kind) {
    case SS_JK_ANY:
        *mask = (1u << SS_JC_COUNT) - 1;
        return SS_OK;
    case SS_JK_OBJECT:
        *mask = 1u << SS_JC_OBJECT;
        return SS_OK;
    case SS_JK_ARRAY:
        *mask = 1u << SS_JC_ARRAY;
        return SS_OK;
    case SS_JK_STRING:
        *mask = 1u << SS_JC_STRING;
        return SS_OK;
    case SS_JK_NUMBER:
    case SS_JK_INTEGER:
        *mask = 1u << SS_JC_NUMBER;
        return SS_OK;
    case SS_JK_BOOLEAN:
        *mask = 1u << SS_JC_BOOL;
        return SS_OK;
    case SS_JK_NULL:
        *mask = 1u << SS_JC_NULL;
        return SS_OK;
    case SS_JK_ENUM: {
        const ss_json_set *s = &c->sc->sets[n->set];
        *mask = 0;
        for (int32_t i = 0; i < s->n; i++) { /* (a literal is printed JSON: its first byte has a class) */
            const int cls = ss_json_first_class(s->lits[i].p[0]);
            *mask |= cls >= 0 ? 1u << cls : 0u;
        }
        return SS_OK;
    }
    case SS_JK_UNION:
        *mask = 0;
        for (int k = 0; k < SS_JC_COUNT; k++)
            if (n->branch[k] >= 0)
                *mask |= 1u << k;
        return SS_OK;
    default:
        return fail(c, SS_ERR_UNSUPPORTED,
                    "a $ref back to a schema that is still being read, inside anyOf or a "
                    "type list (its kind is not known yet)");
    }
}

static const char *const class_names[SS_JC_COUNT] = {"an object", "an array",  "a string",
                                                     "a number",  "a boolean", "null"};

/* Gives union u's alternatives of b's classes to b (or, b a union, to its alternatives); *changed when one was
 * new. Two alternatives for one class are refused. */
static ss_status union_take(cctx *c, int32_t u, int32_t b, int *changed)
{
    unsigned mask = 0;
    SS_CHECK(classes_of(c, b, &mask));
    for (int k = 0; k < SS_JC_COUNT; k++) {
        if (!(mask >> k & 1u))
            continue;
        const ss_json_node *bn = &c->sc->nodes[b];
        int32_t leaf = bn->kind == SS_JK_UNION ? bn->branch[k] : b;
        ss_json_node *un = &c->sc->nodes[u];
        if (un->branch[k] == leaf)
            continue;
        if (un->branch[k] >= 0) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "two alternatives can both be %s: anyOf and type lists must differ in type "
                     "(the first byte tells them apart)",
                     class_names[k]);
            return fail(c, SS_ERR_UNSUPPORTED, msg);
        }
        un->branch[k] = leaf;
        *changed = 1;
    }
    return SS_OK;
}

/* Adds alternative b to union u. A union's alternatives (b a union, or a $ref target not read yet, which may be
 * one) are taken at the end, when every union is whole (resolve_unions): a union may refer to itself. */
static ss_status union_add(cctx *c, int32_t u, int32_t b)
{
    const ss_json_node *bn = &c->sc->nodes[b];
    if (bn->kind != SS_JK_UNION && (int)bn->kind != SS_JK_PENDING) {
        int changed = 0;
        return union_take(c, u, b, &changed);
    }
    if (c->n_fixups == SCHEMA_MAX_FIXUPS)
        return fail(c, SS_ERR_CAPACITY, "more than 4096 alternatives that are themselves anyOf or $ref");
    c->fixups[c->n_fixups].u = u;
    c->fixups[c->n_fixups].b = b;
    snprintf(c->fixups[c->n_fixups].path, sizeof c->fixups[0].path, "%.127s", c->path);
    c->n_fixups++;
    return SS_OK;
}

/* Takes the deferred alternatives until nothing changes (a union of unions takes theirs as they fill). */
static ss_status resolve_unions(cctx *c)
{
    int changed = 1;
    for (int round = 0; changed && round <= c->n_fixups; round++) {
        changed = 0;
        for (int i = 0; i < c->n_fixups; i++) {
            snprintf(c->path, sizeof c->path, "%s", c->fixups[i].path);
            SS_CHECK(union_take(c, c->fixups[i].u, c->fixups[i].b, &changed));
        }
    }
    c->path[0] = '\0';
    return SS_OK;
}

/* ---- keywords ---- */

static int is_one_of(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(s, *list))
            return 1;
    return 0;
}

static const char *const kw_annotations[] = {"title", "description", "default",    "examples", "$schema",
                                             "$id",   "$comment",    "deprecated", "readOnly", "writeOnly",
                                             "$defs", "definitions", "strict",     NULL};
static const char *const kw_supported[] = {
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "$ref", NULL};
static const char *const kw_refused[] = {"pattern",
                                         "format",
                                         "minLength",
                                         "maxLength",
                                         "minimum",
                                         "maximum",
                                         "exclusiveMinimum",
                                         "exclusiveMaximum",
                                         "multipleOf",
                                         "minItems",
                                         "maxItems",
                                         "uniqueItems",
                                         "contains",
                                         "minContains",
                                         "maxContains",
                                         "prefixItems",
                                         "patternProperties",
                                         "propertyNames",
                                         "minProperties",
                                         "maxProperties",
                                         "allOf",
                                         "oneOf",
                                         "not",
                                         "if",
                                         "then",
                                         "else",
                                         "dependentRequired",
                                         "dependentSchemas",
                                         "dependencies",
                                         "unevaluatedProperties",
                                         "unevaluatedItems",
                                         "additionalItems",
                                         "contentEncoding",
                                         "contentMediaType",
                                         "$dynamicRef",
                                         "$recursiveRef",
                                         NULL};

/* Refuses the keywords this subset cannot enforce (unknown ones are ignored, as JSON Schema says). */
static ss_status check_keywords(cctx *c, const cJSON *sch)
{
    for (const cJSON *k = sch->child; k; k = k->next) {
        if (!k->string || is_one_of(k->string, kw_annotations) || is_one_of(k->string, kw_supported))
            continue;
        if (is_one_of(k->string, kw_refused)) {
            size_t at = path_push(c, k->string);
            ss_status st = fail(c, SS_ERR_UNSUPPORTED,
                                "this keyword is not supported (JSON mode enforces types, "
                                "properties, required, items, enum, const, anyOf and $ref)");
            path_pop(c, at);
            return st;
        }
    }
    return SS_OK;
}

static ss_status compile_at(cctx *c, const cJSON *sch, int32_t id);

static ss_status resolve_ref(cctx *c, const cJSON *ref, int32_t *id);

/* A schema that holds "$ref" may hold annotations beside it, nothing else. */
static ss_status ref_only(cctx *c, const cJSON *sch)
{
    for (const cJSON *k = sch->child; k; k = k->next)
        if (strcmp(k->string, "$ref") != 0 && !is_one_of(k->string, kw_annotations))
            return fail(c, SS_ERR_UNSUPPORTED, "keywords beside $ref are not supported");
    return SS_OK;
}

/* The node of a subschema under path segment seg: ANY for true, a $ref's target, else a new node. */
static ss_status compile_new(cctx *c, const cJSON *sch, const char *seg, int32_t *id)
{
    size_t at = path_push(c, seg);
    const cJSON *ref = cJSON_IsObject(sch) ? cJSON_GetObjectItemCaseSensitive(sch, "$ref") : NULL;
    ss_status st = SS_OK;
    if (cJSON_IsTrue(sch))
        *id = SS_JSON_NODE_ANY;
    else if (ref)
        st = ref_only(c, sch) == SS_OK ? resolve_ref(c, ref, id) : SS_ERR_UNSUPPORTED;
    else if ((st = new_node(c, SS_JK_PENDING, id)) == SS_OK)
        st = compile_at(c, sch, *id);
    if (st == SS_OK)
        path_pop(c, at);
    return st;
}

static ss_status remember_ref(cctx *c, const char *r, int32_t id)
{
    if (c->n_refs == SCHEMA_MAX_REFS)
        return fail(c, SS_ERR_CAPACITY, "more than 256 different $ref targets");
    c->refs[c->n_refs].ref = r;
    c->refs[c->n_refs].id = id;
    c->n_refs++;
    return SS_OK;
}

/* What "$ref" r points at in the document: "#", "#/$defs/NAME" or "#/definitions/NAME"; NULL if nothing. */
static const cJSON *ref_target(cctx *c, const char *r)
{
    if (!strcmp(r, "#"))
        return c->doc;
    const char *name = NULL;
    const cJSON *defs = NULL;
    if (!strncmp(r, "#/$defs/", 8)) {
        name = r + 8;
        defs = cJSON_GetObjectItemCaseSensitive(c->doc, "$defs");
    } else if (!strncmp(r, "#/definitions/", 14)) {
        name = r + 14;
        defs = cJSON_GetObjectItemCaseSensitive(c->doc, "definitions");
    }
    if (!name || strpbrk(name, "/~%") || !cJSON_IsObject(defs))
        return NULL;
    return cJSON_GetObjectItemCaseSensitive(defs, name);
}

/* The node of a "$ref": each target is compiled once, into a node made before its contents (so a schema may
 * refer to itself inside its properties or items); a $ref to a $ref is followed. */
static ss_status resolve_ref(cctx *c, const cJSON *ref, int32_t *id)
{
    const char *chain[16];
    int n = 0;
    const cJSON *target = NULL;
    for (;;) {
        if (!cJSON_IsString(ref))
            return fail(c, SS_ERR_INVALID_ARG, "$ref must be a string");
        const char *r = ref->valuestring;
        for (int i = 0; i < c->n_refs; i++)
            if (!strcmp(c->refs[i].ref, r)) {
                for (int k = 0; k < n; k++)
                    SS_CHECK(remember_ref(c, chain[k], c->refs[i].id));
                *id = c->refs[i].id;
                return SS_OK;
            }
        if (!(target = ref_target(c, r))) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "$ref '%.80s' does not name #, #/$defs/NAME or #/definitions/NAME of this "
                     "schema",
                     r);
            return fail(c, SS_ERR_UNSUPPORTED, msg);
        }
        if (n == 16)
            return fail(c, SS_ERR_UNSUPPORTED, "a chain of more than 16 $refs");
        chain[n++] = r;
        const cJSON *next = cJSON_IsObject(target) ? cJSON_GetObjectItemCaseSensitive(target, "$ref") : NULL;
        if (!next)
            break;
        SS_CHECK(ref_only(c, target));
        ref = next;
    }
    if (cJSON_IsTrue(target))
        *id = SS_JSON_NODE_ANY;
    else
        SS_CHECK(new_node(c, SS_JK_PENDING, id));
    for (int k = 0; k < n; k++)
        SS_CHECK(remember_ref(c, chain[k], *id));
    if (*id == SS_JSON_NODE_ANY)
        return SS_OK;
    char saved[sizeof c->path];
    memcpy(saved, c->path, sizeof saved);
    snprintf(c->path, sizeof c->path, "%s", chain[n - 1]); /* errors inside name the target */
    ss_status st = compile_at(c, target, *id);
    if (st == SS_OK)
        memcpy(c->path, saved, sizeof saved);
    return st;
}

/* 1 when the n bytes at p are well-formed UTF-8 (keys and enum strings go into the output as they are). */
static int utf8_ok(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char b = p[i];
        size_t k = b < 0x80                 ? 1
                   : b >= 0xC2 && b <= 0xDF ? 2
                   : b >= 0xE0 && b <= 0xEF ? 3
                   : b >= 0xF0 && b <= 0xF4 ? 4
                                            : 0;
        if (!k || i + k > n)
            return 0;
        for (size_t j = 1; j < k; j++)
            if ((p[i + j] & 0xC0) != 0x80)
                return 0;
        if ((b == 0xE0 && p[i + 1] < 0xA0) || (b == 0xED && p[i + 1] > 0x9F) || (b == 0xF0 && p[i + 1] < 0x90) ||
            (b == 0xF4 && p[i + 1] > 0x8F))
            return 0;
        i += k;
    }
    return 1;
}

/* 1 when value v is of the named JSON Schema type. */
static int value_is(const cJSON *v, const char *type)
{
    if (!strcmp(type, "string"))
        return cJSON_IsString(v);
    if (!strcmp(type, "number"))
        return cJSON_IsNumber(v);
    if (!strcmp(type, "integer"))
        return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble);
    if (!strcmp(type, "boolean"))
        return cJSON_IsBool(v);
    if (!strcmp(type, "null"))
        return cJSON_IsNull(v);
    if (!strcmp(type, "object"))
        return cJSON_IsObject(v);
    return !strcmp(type, "array") && cJSON_IsArray(v);
}

/* 1 when v passes "type" (a name or a list; NULL: any). */
static int value_typed(const cJSON *v, const cJSON *type)
{
    if (!type)
        return 1;
    if (cJSON_IsString(type))
        return value_is(v, type->valuestring);
    for (const cJSON *t = cJSON_IsArray(type) ? type->child : NULL; t; t = t->next)
        if (cJSON_IsString(t) && value_is(v, t->valuestring))
            return 1;
    return 0;
}

/* Refuses a value an enum cannot write exactly as it is: numbers are written as cJSON prints them (%.17g), so
 * only finite ones whose integers stay exact (|x| < 2^53); strings must be UTF-8. Recurses into lists and
 * objects. */
static ss_status check_literal(cctx *c, const cJSON *v)
{
    if (cJSON_IsNumber(v) && (!isfinite(v->valuedouble) || fabs(v->valuedouble) >= 9007199254740992.0))
        return fail(c, SS_ERR_UNSUPPORTED,
                    "an enum or const number that is not finite or not exact as a double "
                    "(at least 2^53)");
    if (cJSON_IsString(v) && !utf8_ok((const unsigned char *)v->valuestring, strlen(v->valuestring)))
        return fail(c, SS_ERR_INVALID_ARG, "an enum or const string that is not UTF-8");
    for (const cJSON *k = cJSON_IsArray(v) || cJSON_IsObject(v) ? v->child : NULL; k; k = k->next) {
        if (k->string && !utf8_ok((const unsigned char *)k->string, strlen(k->string)))
            return fail(c, SS_ERR_INVALID_ARG, "an enum or const key that is not UTF-8");
        SS_CHECK(check_literal(c, k));
    }
    return SS_OK;
}

/* enum or const: the values that pass "type" (if given beside them), as literals. */
static ss_status compile_enum(cctx *c, const cJSON *values, int is_const, const cJSON *type, int32_t id)
{
    int32_t n = is_const ? 1 : cJSON_GetArraySize(values);
    if (!is_const && (!cJSON_IsArray(values) || n < 1))
        return fail(c, SS_ERR_INVALID_ARG, "enum must be a non-empty list");
    if (n > 4096)
        return fail(c, SS_ERR_CAPACITY, "enum has more than 4096 values");
    ss_json_lit *lits = sc_alloc(c->sc, (size_t)n * sizeof *lits);
    if (!lits)
        return nomem(c);
    int32_t m = 0;
    for (const cJSON *v = is_const ? values : values->child; v; v = is_const ? NULL : v->next) {
        if (!value_typed(v, type))
            continue;
        SS_CHECK(check_literal(c, v));
        SS_CHECK(make_lit(c, v, 0, &lits[m++]));
    }
    if (m == 0)
        return fail(c, SS_ERR_UNSUPPORTED, "no value of enum or const has the schema's type");
    int32_t set = -1;
    SS_CHECK(new_set(c, lits, m, &set));
    c->sc->nodes[id].kind = SS_JK_ENUM;
    c->sc->nodes[id].set = set;
    return SS_OK;
}

/* The properties' names (borrowed from props), checked: no name twice, each UTF-8. */
static ss_status prop_names(cctx *c, const cJSON *props, int32_t n, const char ***out)
{
    const char **names = sc_alloc(c->sc, (size_t)n * sizeof *names);
    if (!names)
        return nomem(c);
    int32_t j = 0;
    for (const cJSON *p = props->child; p; p = p->next, j++) {
        names[j] = p->string;
        if (!utf8_ok((const unsigned char *)p->string, strlen(p->string)))
            return fail(c, SS_ERR_INVALID_ARG, "a property name that is not UTF-8");
        for (const cJSON *q = props->child; q != p; q = q->next)
            if (!strcmp(q->string, p->string))
                return fail(c, SS_ERR_INVALID_ARG, "a property is named twice");
    }
    *out = names;
    return SS_OK;
}

/* "required": marks the properties it names; each must be one of them. */
static ss_status mark_required(cctx *c, const cJSON *req, const char *const *names, int32_t n, uint8_t *required)
{
    if (cJSON_GetArraySize(req) > SS_JSON_SCHEMA_MAX_PROPS) /* (each name is looked up among n) */
        return fail(c, SS_ERR_CAPACITY, "required lists more than 255 names");
    for (const cJSON *r = req ? req->child : NULL; r; r = r->next) {
        int32_t k = -1;
        for (int32_t j = 0; cJSON_IsString(r) && j < n && k < 0; j++)
            if (!strcmp(names[j], r->valuestring))
                k = j;
        if (k < 0) {
            char msg[200];
            snprintf(msg, sizeof msg, "required names '%.80s', which is not one of the properties",
                     cJSON_IsString(r) ? r->valuestring : "(not a string)");
            return fail(c, SS_ERR_INVALID_ARG, msg);
        }
        required[k] = 1;
    }
    return SS_OK;
}

/* An object without properties: any object; none but {} ("additionalProperties": false); or any keys whose
 * values follow the schema of additionalProperties (a dictionary). */
static ss_status compile_dict(cctx *c, const cJSON *req, const cJSON *addl, int32_t id)
{
    if (req && cJSON_GetArraySize(req) > 0)
        return fail(c, SS_ERR_INVALID_ARG, "required names properties, but there are none");
    if (cJSON_IsFalse(addl))
        return SS_OK; /* no key at all */
    int32_t v = SS_JSON_NODE_ANY;
    if (addl && !cJSON_IsTrue(addl))
        SS_CHECK(compile_new(c, addl, "additionalProperties", &v));
    if (c->sc->nodes[v].kind == SS_JK_ANY)
        c->sc->nodes[id].free = 1;
    else
        c->sc->nodes[id].addl = v;
    return SS_OK;
}

static ss_status compile_object(cctx *c, const cJSON *sch, int32_t id)
{
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(sch, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(sch, "required");
    const cJSON *addl = cJSON_GetObjectItemCaseSensitive(sch, "additionalProperties");
    if (props && !cJSON_IsObject(props))
        return fail(c, SS_ERR_INVALID_ARG, "properties must be an object");
    if (req && !cJSON_IsArray(req))
        return fail(c, SS_ERR_INVALID_ARG, "required must be a list of property names");
    if (addl && !cJSON_IsBool(addl) && !cJSON_IsObject(addl))
        return fail(c, SS_ERR_INVALID_ARG, "additionalProperties must be a boolean or a schema");
    int32_t n = props ? cJSON_GetArraySize(props) : 0;
    if (n > SS_JSON_SCHEMA_MAX_PROPS)
        return fail(c, SS_ERR_CAPACITY, "an object with more than 255 properties");
    c->sc->nodes[id].kind = SS_JK_OBJECT; /* known before the properties: a $ref back to it can be read */
    if (n == 0)
        return compile_dict(c, req, addl, id);
    /* with properties, additionalProperties is never needed: the output holds the properties alone */
    int32_t *prop = sc_alloc(c->sc, (size_t)n * sizeof *prop);
    uint8_t *required = sc_alloc(c->sc, (size_t)n);
    int32_t *next_req = sc_alloc(c->sc, (size_t)(n + 1) * sizeof *next_req);
    ss_json_lit *keys = sc_alloc(c->sc, (size_t)n * sizeof *keys);
    const char **names = NULL;
    if (!prop || !required || !next_req || !keys)
        return nomem(c);
    SS_CHECK(prop_names(c, props, n, &names));
    int32_t j = 0;
    for (const cJSON *p = props->child; p; p = p->next, j++) {
        cJSON *name = cJSON_CreateString(p->string);
        if (!name)
            return nomem(c);
        ss_status st = make_lit(c, name, (uint16_t)j, &keys[j]);
        cJSON_Delete(name);
        SS_CHECK(st);
        size_t at = path_push(c, "properties");
        SS_CHECK(compile_new(c, p, p->string, &prop[j]));
        path_pop(c, at);
    }
    SS_CHECK(mark_required(c, req, names, n, required));
    next_req[n] = n;
    for (j = n - 1; j >= 0; j--)
        next_req[j] = required[j] ? j : next_req[j + 1];
    int32_t set;
    SS_CHECK(new_set(c, keys, n, &set));
    ss_json_node *node = &c->sc->nodes[id];
    node->n_props = n;
    node->prop = prop;
    node->keys = set;
    node->next_req = next_req;
    return SS_OK;
}

/* A node of one named type, from the keywords of sch that apply to it. */
static ss_status compile_type(cctx *c, const cJSON *sch, const char *type, int32_t id)
{
    static const struct {
        const char *name;
        ss_json_kind kind;
    } types[] = {{"string", SS_JK_STRING},
                 {"number", SS_JK_NUMBER},
                 {"integer", SS_JK_INTEGER},
                 {"boolean", SS_JK_BOOLEAN},
                 {"null", SS_JK_NULL}};
    if (!strcmp(type, "object"))
        return compile_object(c, sch, id);
    if (!strcmp(type, "array")) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(sch, "items");
        c->sc->nodes[id].kind = SS_JK_ARRAY;
        if (cJSON_IsArray(items))
            return fail(c, SS_ERR_UNSUPPORTED, "items as a list (tuples) is not supported");
        int32_t it = SS_JSON_NODE_ANY;
        if (items)
            SS_CHECK(compile_new(c, items, "items", &it));
        c->sc->nodes[id].items = it;
        return SS_OK;
    }
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(type, types[i].name)) {
            c->sc->nodes[id].kind = types[i].kind;
            return SS_OK;
        }
    char msg[120];
    snprintf(msg, sizeof msg, "unknown type '%.40s'", type);
    return fail(c, SS_ERR_INVALID_ARG, msg);
}

/* Keywords that shape a value (beside annotations): anyOf, enum and const take the value alone (enum and const
 * with a type that filters them); JSON Schema would take all of them at once, which this subset cannot. */
static ss_status check_siblings(cctx *c, const cJSON *sch, const char *alone, const char *const *allowed)
{
    for (const cJSON *k = sch->child; k; k = k->next) /* (no $ref here: compile_new and resolve_ref take those) */
        if (strcmp(k->string, alone) != 0 && is_one_of(k->string, kw_supported) && !is_one_of(k->string, allowed)) {
            char msg[160];
            snprintf(msg, sizeof msg, "'%s' beside '%s' is not supported (put it inside each alternative)", k->string,
                     alone);
            return fail(c, SS_ERR_UNSUPPORTED, msg);
        }
    return SS_OK;
}

static ss_status compile_at(cctx *c, const cJSON *sch, int32_t id)
{
    if (cJSON_IsFalse(sch))
        return fail(c, SS_ERR_UNSUPPORTED, "the schema false matches nothing");
    if (!cJSON_IsObject(sch))
        return fail(c, SS_ERR_INVALID_ARG, "a schema must be an object or true");
    if (++c->nest > SCHEMA_MAX_NEST)
        return fail(c, SS_ERR_CAPACITY, "subschemas nested more than 64 deep");
    SS_CHECK(check_keywords(c, sch));
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(sch, "enum");
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(sch, "const");
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(sch, "anyOf");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(sch, "type");
    static const char *const only_type[] = {"type", NULL}, *const nothing[] = {NULL};
    ss_status st = SS_OK;
    if (cJSON_GetObjectItemCaseSensitive(sch, "$ref")) {
        return fail(c, SS_ERR_INTERNAL, "$ref reached compile_at"); /* (compile_new and resolve_ref take them) */
    } else if (en || cn) {
        if (en && cn)
            return fail(c, SS_ERR_UNSUPPORTED, "enum and const together are not supported");
        SS_CHECK(check_siblings(c, sch, en ? "enum" : "const", only_type));
        st = compile_enum(c, en ? en : cn, !en, type, id);
    } else if (any) {
        SS_CHECK(check_siblings(c, sch, "anyOf", nothing));
        if (!cJSON_IsArray(any) || cJSON_GetArraySize(any) < 1)
            return fail(c, SS_ERR_INVALID_ARG, "anyOf must be a non-empty list");
        c->sc->nodes[id].kind = SS_JK_UNION;
        int i = 0;
        for (const cJSON *b = any->child; b && st == SS_OK; b = b->next, i++) {
            char seg[32];
            snprintf(seg, sizeof seg, "anyOf[%d]", i);
            int32_t bid;
            if ((st = compile_new(c, b, seg, &bid)) == SS_OK)
                st = union_add(c, id, bid);
        }
    } else if (cJSON_IsString(type)) {
        st = compile_type(c, sch, type->valuestring, id);
    } else if (cJSON_IsArray(type)) {
        if (cJSON_GetArraySize(type) < 1)
            return fail(c, SS_ERR_INVALID_ARG, "type must be a name or a non-empty list of names");
        c->sc->nodes[id].kind = SS_JK_UNION;
        for (const cJSON *t = type->child; t && st == SS_OK; t = t->next) {
            if (!cJSON_IsString(t))
                return fail(c, SS_ERR_INVALID_ARG, "type must be a name or a non-empty list of names");
            int32_t bid;
            if ((st = new_node(c, SS_JK_PENDING, &bid)) == SS_OK &&
                (st = compile_type(c, sch, t->valuestring, bid)) == SS_OK)
                st = union_add(c, id, bid);
        }
    } else if (type) {
        return fail(c, SS_ERR_INVALID_ARG, "type must be a name or a non-empty list of names");
    } else if (cJSON_GetObjectItemCaseSensitive(sch, "properties") ||
               cJSON_GetObjectItemCaseSensitive(sch, "required") ||
               cJSON_GetObjectItemCaseSensitive(sch, "additionalProperties")) {
        st = compile_type(c, sch, "object", id); /* object keywords without a type: an object */
    } else if (cJSON_GetObjectItemCaseSensitive(sch, "items")) {
        st = compile_type(c, sch, "array", id);
    } else {
        c->sc->nodes[id].kind = SS_JK_ANY;
    }
    c->nest--;
    return st;
}

/* ---- what every node needs at least ---- */

#define DEPTH_NONE (1 << 20) /* a node no value can satisfy */

/* The fewest schema containers (objects with properties or a value schema, arrays) that a value of each node opens
 * nested in one another, DEPTH_NONE when none can be written: a fixed point from "none" down (recursion
 * through required properties never gets there). The grammar opens a container only where that many still fit
 * in SS_JSON_SCHEMA_MAX_DEPTH, so it never reaches a state that nothing can finish. */
static void min_depths(ss_json_schema *sc)
{
    for (int32_t i = 0; i < sc->n_nodes; i++)
        sc->nodes[i].min_depth = DEPTH_NONE;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int32_t i = 0; i < sc->n_nodes; i++) {
            ss_json_node *n = &sc->nodes[i];
            int32_t d = 0;
            if (n->kind == SS_JK_ARRAY) {
                d = 1;
            } else if (n->kind == SS_JK_OBJECT && !n->free) {
                d = 1;
                for (int32_t j = 0; j < n->n_props; j++)
                    if (n->next_req[j] == j) {
                        int32_t r = sc->nodes[n->prop[j]].min_depth;
                        d = r >= DEPTH_NONE ? DEPTH_NONE : r + 1 > d ? r + 1 : d;
                    }
            } else if (n->kind == SS_JK_UNION) {
                d = DEPTH_NONE;
                for (int k = 0; k < SS_JC_COUNT; k++)
                    if (n->branch[k] >= 0 && sc->nodes[n->branch[k]].min_depth < d)
                        d = sc->nodes[n->branch[k]].min_depth;
            }
            if (d < n->min_depth) {
                n->min_depth = d;
                changed = 1;
            }
        }
    }
}

/* The schema of plain JSON mode: node 0 any value, node 1 (the root) any object. Never freed. */
static const ss_json_node any_object_nodes[2] = {
    {.kind = SS_JK_ANY, .items = -1, .set = -1, .keys = -1, .addl = -1, .branch = {-1, -1, -1, -1, -1, -1}},
    {.kind = SS_JK_OBJECT,
     .free = 1,
     .items = -1,
     .set = -1,
     .keys = -1,
     .addl = -1,
     .branch = {-1, -1, -1, -1, -1, -1}},
};
static const ss_json_schema any_object = {
    .nodes = (ss_json_node *)any_object_nodes, .n_nodes = 2, .cap_nodes = 2, .root = 1};

ss_status ss_json_schema_compile(const cJSON *schema, ss_json_schema **out, ss_err *err)
{
    *out = NULL;
    ss_json_schema *sc = ss_calloc(1, sizeof *sc);
    cctx *c = ss_calloc(1, sizeof *c); /* (its fixups make it large for a stack) */
    if (!sc || !c) {
        ss_free(sc);
        ss_free(c);
        return ss_err_set(err, SS_ERR_NOMEM, "JSON schema: out of memory");
    }
    atomic_init(&sc->refs, 1);
    c->sc = sc;
    c->doc = schema;
    c->err = err;
    int32_t any = -1;
    ss_status st = new_node(c, SS_JK_ANY, &any); /* node 0: SS_JSON_NODE_ANY */
    const cJSON *ref = cJSON_IsObject(schema) ? cJSON_GetObjectItemCaseSensitive(schema, "$ref") : NULL;
    if (st == SS_OK && ref) { /* the top level names its schema elsewhere (pydantic does this) */
        if ((st = ref_only(c, schema)) == SS_OK)
            st = resolve_ref(c, ref, &sc->root);
    } else if (st == SS_OK && (st = new_node(c, SS_JK_PENDING, &sc->root)) == SS_OK &&
               (st = remember_ref(c, "#", sc->root)) == SS_OK) {
        st = compile_at(c, schema, sc->root);
    }
    if (st == SS_OK)
        st = resolve_unions(c);
    ss_free(c);
    if (st == SS_OK && sc->nodes[sc->root].kind != SS_JK_OBJECT)
        st = ss_err_set(err, SS_ERR_UNSUPPORTED,
                        "JSON schema: the top level must describe an object "
                        "(\"type\": \"object\")");
    if (st == SS_OK) {
        min_depths(sc);
        int32_t d = sc->nodes[sc->root].min_depth;
        if (d >= DEPTH_NONE)
            st = ss_err_set(err, SS_ERR_UNSUPPORTED,
                            "JSON schema: no value satisfies it (a required property "
                            "that contains itself, or an anyOf with no alternative)");
        else if (d > SS_JSON_SCHEMA_MAX_DEPTH)
            st = ss_err_set(err, SS_ERR_UNSUPPORTED,
                            "JSON schema: its required properties nest objects %d deep; "
                            "at most %d are supported",
                            (int)d, SS_JSON_SCHEMA_MAX_DEPTH);
    }
    if (st != SS_OK) {
        ss_json_schema_destroy(sc);
        return st;
    }
    *out = sc;
    return SS_OK;
}

ss_json_schema *ss_json_schema_ref(ss_json_schema *sc)
{
    if (sc && sc != &any_object) /* (the static schema is never counted) */
        atomic_fetch_add(&sc->refs, 1);
    return sc;
}

void ss_json_schema_destroy(ss_json_schema *sc)
{
    if (!sc || sc == &any_object || atomic_fetch_sub(&sc->refs, 1) != 1)
        return;
    for (int32_t i = 0; i < sc->n_allocs; i++)
        ss_free(sc->allocs[i]);
    ss_free(sc->allocs);
    ss_free(sc->nodes);
    ss_free(sc->sets);
    ss_free(sc);
}

const ss_json_schema *ss_json_schema_any_object(void)
{
    return &any_object;
}

int32_t ss_json_schema_root(const ss_json_schema *sc)
{
    return sc->root;
}

const ss_json_node *ss_json_schema_node(const ss_json_schema *sc, int32_t id)
{
    return &sc->nodes[id];
}

const ss_json_set *ss_json_schema_set(const ss_json_schema *sc, int32_t id)
{
    return &sc->sets[id];
}

int ss_json_first_class(uint8_t c)
{
    switch (c) {
    case '{':
        return SS_JC_OBJECT;
    case '[':
        return SS_JC_ARRAY;
    case '"':
        return SS_JC_STRING;
    case 't':
    case 'f':
        return SS_JC_BOOL;
    case 'n':
        return SS_JC_NULL;
    default:
        return c == '-' || (c >= '0' && c <= '9') ? SS_JC_NUMBER : -1;
    }
}
