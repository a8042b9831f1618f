/* tmpl_value.c — the template engine's tagged values (refcounted strings, lists, dicts, namespaces),
 * their Python-compatible str()/repr()/json.dumps() forms, comparisons, UTF-8 helpers and the tree arena. */
#include <assert.h>
#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "template/tmpl_internal.h"

/* ---------------------------------------------------------------- arena */
struct tm_arena_blk {
    tm_arena_blk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *tm_arena_alloc(tm_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    tm_arena_blk *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = ss_malloc(sizeof(*b) + cap);
        if (!b)
            return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

void tm_arena_free(tm_arena *a)
{
    tm_arena_blk *b = a->head;
    while (b) {
        tm_arena_blk *next = b->next;
        ss_free(b);
        b = next;
    }
    a->head = NULL;
}

/* ---------------------------------------------------------------- errors, budget, buffers */
ss_status (tr_fail)(tr *r, ss_status st, const tn *node, const char *fmt, ...) /* (parenthesised: the analyzer macro) */
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!node)
        node = r->cur_node;
    return ss_err_set(r->err, st, "%s:%d: %s", r->name, node ? node->line : 0, msg);
}

ss_status tr_charge(tr *r, size_t bytes)
{
    r->created += bytes;
    if (r->created > SS_TEMPLATE_MAX_CREATED)
        return tr_fail(r, SS_ERR_CAPACITY, NULL, "template created more than %zu bytes of values",
                       (size_t)SS_TEMPLATE_MAX_CREATED);
    return SS_OK;
}

ss_status tr_step(tr *r, const tn *at)
{
    if (++r->steps > SS_TEMPLATE_MAX_STEPS)
        return tr_fail(r, SS_ERR_CAPACITY, at, "template exceeded %lld evaluation steps",
                       (long long)SS_TEMPLATE_MAX_STEPS);
    return SS_OK;
}

ss_status tr_work(tr *r, size_t items, size_t bytes)
{
    /* counted like steps, so a loop cannot repeat a big scan 10**6 times: 2e7 steps read at most 320 MB */
    r->read += bytes;
    uint64_t w = (uint64_t)items + r->read / 16;
    r->read %= 16;
    r->steps += w > (uint64_t)SS_TEMPLATE_MAX_STEPS ? SS_TEMPLATE_MAX_STEPS + 1 : (int64_t)w;
    if (r->steps > SS_TEMPLATE_MAX_STEPS)
        return tr_fail(r, SS_ERR_CAPACITY, NULL, "template exceeded %lld evaluation steps",
                       (long long)SS_TEMPLATE_MAX_STEPS);
    return SS_OK;
}

ss_status tbuf_put(tr *r, tbuf *b, const char *p, size_t n)
{
    if (n == 0)
        return SS_OK;
    if (n > SS_TEMPLATE_MAX_OUTPUT || b->n + n > SS_TEMPLATE_MAX_OUTPUT)
        return tr_fail(r, SS_ERR_CAPACITY, NULL, "rendered text exceeds %zu bytes", (size_t)SS_TEMPLATE_MAX_OUTPUT);
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        SS_CHECK(tr_charge(r, cap - b->cap));
        char *np = ss_realloc(b->p, cap);
        if (!np)
            return tr_fail(r, SS_ERR_NOMEM, NULL, "out of memory");
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = '\0';
    return SS_OK;
}

ss_status tbuf_putc(tr *r, tbuf *b, char c)
{
    return tbuf_put(r, b, &c, 1);
}
ss_status tbuf_puts(tr *r, tbuf *b, const char *s)
{
    return tbuf_put(r, b, s, strlen(s));
}

void tbuf_free(tbuf *b)
{
    ss_free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ---------------------------------------------------------------- hash index */
/* Hashes are written here, not taken from a library: each is a few lines, and the keys are the engine's own
 * values (tv_hash must agree with tv_eq, which no library knows). Not seeded: keys made to collide only
 * make their lookups probe longer, and every probe counts as a step (tr_work), as every entry of a scan did. */
static uint32_t tm_mix(uint64_t h) /* the finalizer of MurmurHash3: every input bit moves the low bits */
{
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return (uint32_t)h;
}

uint32_t tm_hash_bytes(const char *p, size_t n) /* FNV-1a, mixed: FNV alone leaves the low bits weak */
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return tm_mix(h);
}

size_t tm_index_want(const tm_index *ix, size_t n)
{
    if (n < TM_INDEX_MIN)
        return 0;
    size_t cap = ix->cap ? ix->cap : 4 * TM_INDEX_MIN;
    while (cap / 2 < n)
        cap *= 2;
    return cap == ix->cap ? 0 : cap;
}

static void tm_index_place(tm_slot *slot, size_t cap, uint32_t h, uint32_t at)
{
    size_t i = h & (cap - 1);
    while (slot[i].at)
        i = (i + 1) & (cap - 1);
    slot[i].hash = h;
    slot[i].at = at;
}

int tm_index_grow(tm_index *ix, size_t cap)
{
    tm_slot *slot = ss_calloc(cap, sizeof(*slot));
    if (!slot)
        return 0;
    for (size_t i = 0; i < ix->cap; i++)
        if (ix->slot[i].at)
            tm_index_place(slot, cap, ix->slot[i].hash, ix->slot[i].at);
    ss_free(ix->slot);
    ix->slot = slot;
    ix->cap = cap;
    return 1;
}

void tm_index_put(tm_index *ix, uint32_t h, size_t at)
{
    /* positions fit in 32 bits: dicts stop near SS_TEMPLATE_MAX_LOOP_ITERS entries, scopes in fr_reserve */
    tm_index_place(ix->slot, ix->cap, h, (uint32_t)(at + 1));
}

void tm_index_free(tm_index *ix)
{
    ss_free(ix->slot);
    ix->slot = NULL;
    ix->cap = 0;
}

/* ---------------------------------------------------------------- heap objects */
static void *tv_obj_new(tr *r, size_t size, int kind)
{
    if (tr_charge(r, size) != SS_OK)
        return NULL;
    tv_obj *o = ss_calloc(1, size);
    if (!o) {
        tr_fail(r, SS_ERR_NOMEM, NULL, "out of memory");
        return NULL;
    }
    o->refs = 1;
    o->kind = kind;
    o->next = r->heap.next;
    o->prev = &r->heap;
    r->heap.next->prev = o;
    r->heap.next = o;
    return o;
}

/* Drops a reference; an object left with none moves from the heap list onto *dead (through `next`). */
static void tv_drop(tv v, tv_obj **dead)
{
    if (v.o && --v.o->refs == 0) {
        v.o->prev->next = v.o->next;
        v.o->next->prev = v.o->prev;
        v.o->next = *dead;
        *dead = v.o;
    }
}

void tv_incref(tv v)
{
    if (v.o)
        v.o->refs++;
}

void tv_decref(tv v)
{
    /* a worklist, not recursion: a list nested 300000 deep (ns.x = [ns.x] in a loop) overflowed the stack */
    tv_obj *dead = NULL;
    tv_drop(v, &dead);
    while (dead) {
        tv_obj *o = dead;
        dead = o->next;
        if (o->kind == TV_LIST) {
            tv_list_obj *l = (tv_list_obj *)o;
            for (size_t i = 0; i < l->n; i++)
                tv_drop(l->v[i], &dead);
            ss_free(l->v);
        } else if (o->kind == TV_DICT || o->kind == TV_NS) {
            tv_dict_obj *d = (tv_dict_obj *)o;
            for (size_t i = 0; i < d->n; i++) {
                tv_drop(d->k[i], &dead);
                tv_drop(d->v[i], &dead);
            }
            ss_free(d->k);
            ss_free(d->v);
            tm_index_free(&d->ix);
        } else if (o->kind == TV_LOOP) {
            tv_drop(((tv_loop_obj *)o)->items, &dead);
        }
        ss_free(o);
    }
}

/* Frees every object still alive (reference cycles through namespaces), without following references. */
void tr_heap_free_all(tr *r)
{
    tv_obj *o = r->heap.next;
    while (o != &r->heap) {
        tv_obj *next = o->next;
        if (o->kind == TV_LIST)
            ss_free(((tv_list_obj *)o)->v);
        else if (o->kind == TV_DICT || o->kind == TV_NS) {
            ss_free(((tv_dict_obj *)o)->k);
            ss_free(((tv_dict_obj *)o)->v);
            tm_index_free(&((tv_dict_obj *)o)->ix);
        }
        ss_free(o);
        o = next;
    }
    r->heap.next = r->heap.prev = &r->heap;
}

/* The status of a failed tv_obj_new (its message is already set). */
static ss_status tv_fail_status(tr *r)
{
    return r->created > SS_TEMPLATE_MAX_CREATED ? SS_ERR_CAPACITY : SS_ERR_NOMEM;
}

ss_status tv_str_new(tr *r, const char *p, size_t n, tv *out)
{
    if (n > SS_TEMPLATE_MAX_OUTPUT)
        return tr_fail(r, SS_ERR_CAPACITY, NULL, "string exceeds %zu bytes", (size_t)SS_TEMPLATE_MAX_OUTPUT);
    tv_str_obj *s = tv_obj_new(r, sizeof(*s) + n + 1, TV_STR);
    if (!s)
        return tv_fail_status(r);
    if (n)
        memcpy(s->data, p, n);
    s->data[n] = '\0';
    s->n = n;
    out->kind = TV_STR;
    out->u.s.p = s->data;
    out->u.s.n = n;
    out->o = &s->h;
    return SS_OK;
}

ss_status tv_str_take(tr *r, tbuf *b, tv *out)
{
    ss_status st = tv_str_new(r, b->p ? b->p : "", b->n, out);
    tbuf_free(b);
    return st;
}

ss_status tv_list_new(tr *r, size_t cap, int tuple, tv *out)
{
    tv_list_obj *l = tv_obj_new(r, sizeof(*l), TV_LIST);
    if (!l)
        return tv_fail_status(r);
    l->tuple = tuple;
    out->kind = TV_LIST;
    out->u.i = 0;
    out->o = &l->h;
    if (cap) {
        if (cap > SS_TEMPLATE_MAX_LOOP_ITERS)
            cap = SS_TEMPLATE_MAX_LOOP_ITERS;
        SS_CHECK(tr_charge(r, cap * sizeof(tv)));
        l->v = ss_malloc(cap * sizeof(tv));
        if (!l->v)
            return tr_fail(r, SS_ERR_NOMEM, NULL, "out of memory");
        l->cap = cap;
    }
    return SS_OK;
}

ss_status tv_list_push(tr *r, tv list, tv item)
{
    tv_list_obj *l = TV_LIST_OF(list);
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        if (l->n >= (size_t)SS_TEMPLATE_MAX_LOOP_ITERS) {
            tv_decref(item);
            return tr_fail(r, SS_ERR_CAPACITY, NULL, "list longer than %lld items",
                           (long long)SS_TEMPLATE_MAX_LOOP_ITERS);
        }
        ss_status st = tr_charge(r, (cap - l->cap) * sizeof(tv));
        tv *nv = st == SS_OK ? ss_realloc(l->v, cap * sizeof(tv)) : NULL;
        if (!nv) {
            tv_decref(item);
            return st != SS_OK ? st : tr_fail(r, SS_ERR_NOMEM, NULL, "out of memory");
        }
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = item;
    return SS_OK;
}

ss_status tv_dict_new(tr *r, size_t cap, int ns, tv *out)
{
    (void)cap;
    tv_dict_obj *d = tv_obj_new(r, sizeof(*d), ns ? TV_NS : TV_DICT);
    if (!d)
        return tv_fail_status(r);
    out->kind = ns ? TV_NS : TV_DICT;
    out->u.i = 0;
    out->o = &d->h;
    return SS_OK;
}

/* The position of key in d (-1 when absent), counting the work. *h: key's hash when d has an index. A
 * float can equal several int keys (2**53 and 2**53 + 1 both == 2.0**53: tv_eq compares ints with floats as
 * doubles, which is not transitive), and the scan returned the earliest: for a float the whole probe
 * sequence is looked at and the earliest match wins, so an index changes no lookup's answer. */
static ss_status tv_dict_find(tr *r, const tv_dict_obj *d, tv key, uint32_t *h, ptrdiff_t *at)
{
    size_t klen = key.kind == TV_STR ? key.u.s.n : 0;
    *at = -1;
    if (!d->ix.slot) {
        SS_CHECK(tr_work(r, d->n, klen)); /* the key is compared with every entry */
        for (size_t i = 0; i < d->n; i++)
            if (tv_eq(d->k[i], key)) {
                *at = (ptrdiff_t)i;
                break;
            }
        return SS_OK;
    }
    *h = tv_hash(key);
    size_t mask = d->ix.cap - 1, probes = 0, bytes = klen; /* hashed once, compared at each equal hash */
    for (size_t i = *h & mask;; i = (i + 1) & mask) {
        const tm_slot *s = &d->ix.slot[i];
        probes++;
        if (!s->at)
            break;
        if (s->hash != *h)
            continue;
        bytes += klen;
        if (!tv_eq(d->k[s->at - 1], key))
            continue;
        if (*at < 0 || (ptrdiff_t)s->at - 1 < *at)
            *at = (ptrdiff_t)s->at - 1;
        if (key.kind != TV_FLOAT)
            break;
    }
    /* counted after the probes, which one index bounds: colliding keys (crafted, or NaNs) only cost steps */
    return tr_work(r, probes, bytes);
}

/* Room for one more entry in k/v and the index (built when the dict reaches TM_INDEX_MIN entries). */
static ss_status tv_dict_reserve(tr *r, tv_dict_obj *d, tv key)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        if (d->n >= (size_t)SS_TEMPLATE_MAX_LOOP_ITERS)
            return tr_fail(r, SS_ERR_CAPACITY, NULL, "dict larger than %lld items",
                           (long long)SS_TEMPLATE_MAX_LOOP_ITERS);
        SS_CHECK(tr_charge(r, (cap - d->cap) * 2 * sizeof(tv)));
        tv *nk = ss_realloc(d->k, cap * sizeof(tv));
        if (nk)
            d->k = nk;
        tv *nv = nk ? ss_realloc(d->v, cap * sizeof(tv)) : NULL;
        if (nv)
            d->v = nv;
        if (!nk || !nv)
            return tr_fail(r, SS_ERR_NOMEM, NULL, "out of memory");
        d->cap = cap;
    }
    size_t want = tm_index_want(&d->ix, d->n + 1);
    if (!want)
        return SS_OK;
    SS_CHECK(tr_charge(r, (want - d->ix.cap) * sizeof(tm_slot)));
    int fresh = d->ix.slot == NULL;
    size_t bytes = key.kind == TV_STR ? key.u.s.n : 0;
    for (size_t i = 0; fresh && i < d->n; i++)
        bytes += d->k[i].kind == TV_STR ? d->k[i].u.s.n : 0;
    /* every entry moved (or hashed, when new) once per doubling: a step each, two per insert at most */
    SS_CHECK(tr_work(r, d->n, fresh ? bytes : 0));
    if (!tm_index_grow(&d->ix, want))
        return tr_fail(r, SS_ERR_NOMEM, NULL, "out of memory");
    for (size_t i = 0; fresh && i < d->n; i++)
        tm_index_put(&d->ix, tv_hash(d->k[i]), i);
    return SS_OK;
}

ss_status tv_dict_set(tr *r, tv dict, tv key, tv val)
{
    tv_dict_obj *d = TV_DICT_OF(dict);
    uint32_t h = 0;
    ptrdiff_t at = -1;
    int hashed = d->ix.slot != NULL;
    ss_status st = tv_dict_find(r, d, key, &h, &at);
    if (st == SS_OK && at >= 0) { /* the key keeps its place, as in Python */
        assert(d->v); /* a key found has its value */
        tv_decref(key);
        tv_decref(d->v[at]);
        d->v[at] = val;
        return SS_OK;
    }
    if (st == SS_OK)
        st = tv_dict_reserve(r, d, key);
    if (st != SS_OK) {
        tv_decref(key);
        tv_decref(val);
        return st;
    }
    if (d->ix.slot)
        tm_index_put(&d->ix, hashed ? h : tv_hash(key), d->n);
    d->k[d->n] = key;
    d->v[d->n] = val;
    d->n++;
    return SS_OK;
}

ss_status tv_dict_get(tr *r, tv dict, tv key, const tv **hit)
{
    const tv_dict_obj *d = TV_DICT_OF(dict);
    uint32_t h;
    ptrdiff_t at;
    *hit = NULL;
    SS_CHECK(tv_dict_find(r, d, key, &h, &at));
    if (at >= 0)
        *hit = &d->v[at];
    return SS_OK;
}

ss_status tv_dict_gets(tr *r, tv dict, const char *key, size_t n, const tv **hit)
{
    return tv_dict_get(r, dict, tv_sborrow(key, n), hit);
}

ss_status tv_loop_new(tr *r, tv items, tv *out)
{
    tv_loop_obj *l = tv_obj_new(r, sizeof(*l), TV_LOOP);
    if (!l)
        return tv_fail_status(r);
    tv_incref(items);
    l->items = items;
    l->length = (int64_t)TV_LIST_OF(items)->n;
    out->kind = TV_LOOP;
    out->u.i = 0;
    out->o = &l->h;
    return SS_OK;
}

/* JSON numbers that are integral and exactly representable become ints (json.loads gives int for "3"). */
ss_status tv_from_json(tr *r, const cJSON *j, tv *out)
{
    if (!j || cJSON_IsNull(j)) {
        *out = tv_none();
    } else if (cJSON_IsBool(j)) {
        *out = tv_bool(cJSON_IsTrue(j));
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (isfinite(d) && d == floor(d) && fabs(d) < 9007199254740992.0)
            *out = tv_int((int64_t)d);
        else
            *out = tv_float(d);
    } else if (cJSON_IsString(j)) {
        *out = tv_sborrow(j->valuestring, strlen(j->valuestring));
    } else if (cJSON_IsArray(j)) {
        SS_CHECK(tv_list_new(r, 0, 0, out));
        for (const cJSON *c = j->child; c; c = c->next) {
            tv item;
            ss_status st = tv_from_json(r, c, &item);
            if (st == SS_OK)
                st = tv_list_push(r, *out, item);
            if (st != SS_OK) {
                tv_decref(*out);
                return st;
            }
        }
    } else if (cJSON_IsObject(j)) {
        SS_CHECK(tv_dict_new(r, 0, 0, out));
        for (const cJSON *c = j->child; c; c = c->next) {
            tv item;
            ss_status st = tv_from_json(r, c, &item);
            if (st == SS_OK)
                st = tv_dict_set(r, *out, tv_sborrow(c->string ? c->string : "", c->string ? strlen(c->string) : 0),
                                 item);
            if (st != SS_OK) {
                tv_decref(*out);
                return st;
            }
        }
    } else {
        *out = tv_none();
    }
    return SS_OK;
}

/* ---------------------------------------------------------------- UTF-8 */
size_t tm_utf8_decode(const char *p, size_t n, uint32_t *cp)
{
    const unsigned char *s = (const unsigned char *)p;
    if (n == 0) {
        *cp = 0;
        return 0;
    }
    unsigned c = s[0];
    size_t len;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2;
        v = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        v = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        v = c & 0x07;
    } else {
        *cp = c; /* stray byte: one "character" */
        return 1;
    }
    if (len > n) {
        *cp = c;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *cp = c;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3f);
    }
    *cp = v;
    return len;
}

size_t tm_utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

size_t tm_utf8_len(const char *p, size_t n)
{
    size_t count = 0;
    uint32_t cp;
    for (size_t i = 0; i < n; count++)
        i += tm_utf8_decode(p + i, n - i, &cp);
    return count;
}

size_t tm_utf8_offset(const char *p, size_t n, size_t cp_index)
{
    size_t i = 0;
    uint32_t cp;
    while (cp_index > 0 && i < n) {
        i += tm_utf8_decode(p + i, n - i, &cp);
        cp_index--;
    }
    return i;
}

int tm_is_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

/* ---------------------------------------------------------------- truth, equality, order */
int tv_is_str(tv v)
{
    return v.kind == TV_STR;
}

int tv_truthy(tv v)
{
    switch (v.kind) {
    case TV_UNDEF:
    case TV_NONE:
        return 0;
    case TV_BOOL:
    case TV_INT:
        return v.u.i != 0;
    case TV_FLOAT:
        return v.u.f != 0.0;
    case TV_STR:
        return v.u.s.n != 0;
    case TV_LIST:
        return TV_LIST_OF(v)->n != 0;
    case TV_DICT:
        return TV_DICT_OF(v)->n != 0;
    default:
        return 1;
    }
}

static int tv_is_num(tv v)
{
    return v.kind == TV_BOOL || v.kind == TV_INT || v.kind == TV_FLOAT;
}
static double tv_num(tv v)
{
    return v.kind == TV_FLOAT ? v.u.f : (double)v.u.i;
}

int tv_eq(tv a, tv b)
{
    if (tv_is_num(a) && tv_is_num(b)) {
        if (a.kind != TV_FLOAT && b.kind != TV_FLOAT)
            return a.u.i == b.u.i;
        return tv_num(a) == tv_num(b);
    }
    if (a.kind != b.kind)
        return 0;
    switch (a.kind) {
    case TV_UNDEF:
    case TV_NONE:
        return 1;
    case TV_STR:
        return a.u.s.n == b.u.s.n && (a.u.s.n == 0 || memcmp(a.u.s.p, b.u.s.p, a.u.s.n) == 0);
    case TV_MACRO:
        return a.u.macro == b.u.macro;
    case TV_FUNC:
        return a.u.i == b.u.i;
    default:
        return a.o == b.o;
    }
}

uint32_t tv_hash(tv k)
{
    switch (k.kind) {
    case TV_BOOL:
    case TV_INT:
    case TV_FLOAT: {
        /* the double tv_eq compares: 1, 1.0 and True hash alike, as do 2**53 + 1 and 2.0**53 */
        double f = k.kind == TV_FLOAT ? k.u.f : (double)k.u.i;
        uint64_t bits;
        if (f == 0)
            f = 0; /* -0.0 == 0.0 */
        memcpy(&bits, &f, sizeof(bits));
        return tm_mix(bits);
    }
    case TV_STR:
        return tm_hash_bytes(k.u.s.p, k.u.s.n);
    case TV_UNDEF:
    case TV_NONE:
        return tm_mix((uint64_t)k.kind);
    case TV_MACRO:
        return tm_mix((uint64_t)(uintptr_t)k.u.macro);
    case TV_FUNC:
        return tm_mix((uint64_t)k.u.i);
    default:
        return tm_mix((uint64_t)(uintptr_t)k.o); /* by identity, as tv_eq compares them */
    }
}

/* tv_equal at nesting depth `depth`. Each comparison is a step: lists that share sublists ([x, x] nested 40
 * times) have 2**40 paths, and a list nested 300000 deep recursed as deep. */
static ss_status tv_eq_at(tr *r, tv a, tv b, int depth, int *res)
{
    *res = 0;
    if (depth > SS_TEMPLATE_MAX_NESTING)
        return tr_fail(r, SS_ERR_CAPACITY, NULL, "value nested too deeply to compare");
    SS_CHECK(tr_work(r, 1, a.kind == TV_STR && b.kind == TV_STR && a.u.s.n == b.u.s.n ? a.u.s.n : 0));
    if (a.kind == TV_LIST && b.kind == TV_LIST) {
        const tv_list_obj *x = TV_LIST_OF(a), *y = TV_LIST_OF(b);
        if (x->n != y->n || x->tuple != y->tuple)
            return SS_OK;
        *res = 1;
        for (size_t i = 0; i < x->n && *res; i++)
            SS_CHECK(tv_eq_at(r, x->v[i], y->v[i], depth + 1, res));
        return SS_OK;
    }
    if (a.kind == TV_DICT && b.kind == TV_DICT) {
        const tv_dict_obj *x = TV_DICT_OF(a), *y = TV_DICT_OF(b);
        if (x->n != y->n)
            return SS_OK;
        *res = 1;
        for (size_t i = 0; i < x->n && *res; i++) {
            const tv *o;
            SS_CHECK(tv_dict_get(r, b, x->k[i], &o)); /* the key's lookup counts its work */
            *res = 0;
            if (o)
                SS_CHECK(tv_eq_at(r, x->v[i], *o, depth + 1, res));
        }
        return SS_OK;
    }
    *res = tv_eq(a, b);
    return SS_OK;
}

ss_status tv_equal(tr *r, tv a, tv b, int *res)
{
    return tv_eq_at(r, a, b, 0, res);
}

/* tv_cmp at nesting depth `depth`, bounded like tv_eq_at. */
static ss_status tv_cmp_at(tr *r, tv a, tv b, int depth, int *res)
{
    if (depth > SS_TEMPLATE_MAX_NESTING)
        return tr_fail(r, SS_ERR_CAPACITY, NULL, "value nested too deeply to compare");
    SS_CHECK(tr_work(r, 1, a.kind == TV_STR && b.kind == TV_STR ? (a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n) : 0));
    if (tv_is_num(a) && tv_is_num(b)) {
        if (a.kind != TV_FLOAT && b.kind != TV_FLOAT)
            *res = a.u.i < b.u.i ? -1 : a.u.i > b.u.i;
        else {
            double x = tv_num(a), y = tv_num(b);
            *res = x < y ? -1 : x > y;
        }
        return SS_OK;
    }
    if (a.kind == TV_STR && b.kind == TV_STR) { /* UTF-8 byte order is code point order */
        size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int c = n ? memcmp(a.u.s.p, b.u.s.p, n) : 0;
        *res = c ? (c < 0 ? -1 : 1) : (a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n);
        return SS_OK;
    }
    if (a.kind == TV_LIST && b.kind == TV_LIST) {
        const tv_list_obj *x = TV_LIST_OF(a), *y = TV_LIST_OF(b);
        for (size_t i = 0; i < x->n && i < y->n; i++) {
            int eq;
            SS_CHECK(tv_eq_at(r, x->v[i], y->v[i], depth + 1, &eq));
            if (eq)
                continue;
            return tv_cmp_at(r, x->v[i], y->v[i], depth + 1, res);
        }
        *res = x->n < y->n ? -1 : x->n > y->n;
        return SS_OK;
    }
    return tr_fail(r, SS_ERR_INVALID_ARG, NULL, "cannot compare %s with %s", tv_type_name(a), tv_type_name(b));
}

ss_status tv_cmp(tr *r, tv a, tv b, int *res)
{
    return tv_cmp_at(r, a, b, 0, res);
}

const char *tv_type_name(tv v)
{
    switch (v.kind) {
    case TV_UNDEF:
        return "undefined";
    case TV_NONE:
        return "NoneType";
    case TV_BOOL:
        return "bool";
    case TV_INT:
        return "int";
    case TV_FLOAT:
        return "float";
    case TV_STR:
        return "str";
    case TV_LIST:
        return TV_LIST_OF(v)->tuple ? "tuple" : "list";
    case TV_DICT:
        return "dict";
    case TV_NS:
        return "Namespace";
    case TV_MACRO:
        return "Macro";
    case TV_FUNC:
        return "function";
    case TV_LOOP:
        return "LoopContext";
    }
    return "?";
}

/* ---------------------------------------------------------------- str / repr */
/* Python's float repr: the shortest digits that round-trip; fixed notation for 1e-4 <= |x| < 1e16. */
void tv_float_repr(double f, char buf[40])
{
    if (isnan(f)) {
        snprintf(buf, 40, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, 40, f < 0 ? "-inf" : "inf");
        return;
    }
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f)
            break;
    }
    /* tmp: [-]d[.ddd]e[+-]xx */
    char digits[24];
    size_t nd = 0;
    const char *p = tmp;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < sizeof(digits) - 1)
            digits[nd++] = *p;
    int exp10 = (*p == 'e') ? (int)strtol(p + 1, NULL, 10) : 0;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    char *o = buf;
    size_t left = 40;
#define PUT(...)                                                                                                       \
    do {                                                                                                               \
        int w_ = snprintf(o, left, __VA_ARGS__);                                                                       \
        if (w_ > 0 && (size_t)w_ < left) {                                                                             \
            o += w_;                                                                                                   \
            left -= (size_t)w_;                                                                                        \
        }                                                                                                              \
    } while (0)
    if (neg)
        PUT("-");
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            PUT("0.");
            for (int i = 0; i < -exp10 - 1; i++)
                PUT("0");
            PUT("%s", digits);
        } else {
            for (int i = 0; i <= exp10; i++)
                PUT("%c", (size_t)i < nd ? digits[i] : '0');
            PUT(".");
            if ((size_t)exp10 + 1 < nd)
                PUT("%s", digits + exp10 + 1);
            else
                PUT("0");
        }
    } else {
        PUT("%c", digits[0]);
        if (nd > 1)
            PUT(".%s", digits + 1);
        PUT("e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
#undef PUT
}

static ss_status tv_write_pystr_repr(tr *r, tbuf *b, const char *p, size_t n)
{
    int has_sq = memchr(p, '\'', n) != NULL, has_dq = memchr(p, '"', n) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    SS_CHECK(tbuf_putc(r, b, q));
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = tm_utf8_decode(p + i, n - i, &cp);
        char esc[16];
        if (cp == '\\' || cp == (uint32_t)q) {
            esc[0] = '\\';
            esc[1] = (char)cp;
            SS_CHECK(tbuf_put(r, b, esc, 2));
        } else if (cp == '\n') {
            SS_CHECK(tbuf_put(r, b, "\\n", 2));
        } else if (cp == '\r') {
            SS_CHECK(tbuf_put(r, b, "\\r", 2));
        } else if (cp == '\t') {
            SS_CHECK(tbuf_put(r, b, "\\t", 2));
        } else if (cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad) {
            snprintf(esc, sizeof(esc), "\\x%02x", (unsigned)cp);
            SS_CHECK(tbuf_puts(r, b, esc));
        } else {
            SS_CHECK(tbuf_put(r, b, p + i, k));
        }
        i += k;
    }
    return tbuf_putc(r, b, q);
}

static ss_status tv_write_any(tr *r, tbuf *b, tv v, int repr, int depth)
{
    char num[40];
    if (depth > SS_TEMPLATE_MAX_NESTING)
        return tr_fail(r, SS_ERR_CAPACITY, NULL, "value nested too deeply to print");
    switch (v.kind) {
    case TV_UNDEF:
        return repr ? tbuf_puts(r, b, "Undefined") : SS_OK;
    case TV_NONE:
        return tbuf_puts(r, b, "None");
    case TV_BOOL:
        return tbuf_puts(r, b, v.u.i ? "True" : "False");
    case TV_INT:
        snprintf(num, sizeof(num), "%lld", (long long)v.u.i);
        return tbuf_puts(r, b, num);
    case TV_FLOAT:
        tv_float_repr(v.u.f, num);
        return tbuf_puts(r, b, num);
    case TV_STR:
        return repr ? tv_write_pystr_repr(r, b, v.u.s.p, v.u.s.n) : tbuf_put(r, b, v.u.s.p, v.u.s.n);
    case TV_LIST: {
        const tv_list_obj *l = TV_LIST_OF(v);
        SS_CHECK(tbuf_putc(r, b, l->tuple ? '(' : '['));
        for (size_t i = 0; i < l->n; i++) {
            if (i)
                SS_CHECK(tbuf_put(r, b, ", ", 2));
            SS_CHECK(tv_write_any(r, b, l->v[i], 1, depth + 1));
        }
        if (l->tuple && l->n == 1)
            SS_CHECK(tbuf_putc(r, b, ','));
        return tbuf_putc(r, b, l->tuple ? ')' : ']');
    }
    case TV_DICT:
    case TV_NS: {
        const tv_dict_obj *d = TV_DICT_OF(v);
        if (v.kind == TV_NS)
            SS_CHECK(tbuf_puts(r, b, "<Namespace "));
        SS_CHECK(tbuf_putc(r, b, '{'));
        for (size_t i = 0; i < d->n; i++) {
            if (i)
                SS_CHECK(tbuf_put(r, b, ", ", 2));
            SS_CHECK(tv_write_any(r, b, d->k[i], 1, depth + 1));
            SS_CHECK(tbuf_put(r, b, ": ", 2));
            SS_CHECK(tv_write_any(r, b, d->v[i], 1, depth + 1));
        }
        SS_CHECK(tbuf_putc(r, b, '}'));
        return v.kind == TV_NS ? tbuf_putc(r, b, '>') : SS_OK;
    }
    case TV_MACRO:
        SS_CHECK(tbuf_puts(r, b, "<Macro '"));
        SS_CHECK(tbuf_puts(r, b, v.u.macro->s));
        return tbuf_puts(r, b, "'>");
    case TV_FUNC:
        return tbuf_puts(r, b, "<function>");
    case TV_LOOP:
        return tbuf_puts(r, b, "<LoopContext>");
    }
    return SS_OK;
}

ss_status tv_write_str(tr *r, tbuf *b, tv v)
{
    return tv_write_any(r, b, v, 0, 0);
}
ss_status tv_write_repr(tr *r, tbuf *b, tv v)
{
    return tv_write_any(r, b, v, 1, 0);
}

ss_status tv_to_str(tr *r, tv v, tv *out)
{
    if (v.kind == TV_STR) {
        tv_incref(v);
        *out = v;
        return SS_OK;
    }
    if (v.kind == TV_UNDEF) {
        *out = tv_sborrow("", 0);
        return SS_OK;
    }
    tbuf b = {0};
    ss_status st = tv_write_str(r, &b, v);
    if (st != SS_OK) {
        tbuf_free(&b);
        return st;
    }
    return tv_str_take(r, &b, out);
}

/* ---------------------------------------------------------------- json.dumps */
static ss_status tv_json_string(tr *r, tbuf *b, const char *p, size_t n, int ensure_ascii)
{
    SS_CHECK(tbuf_putc(r, b, '"'));
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = tm_utf8_decode(p + i, n - i, &cp);
        char esc[16];
        switch (cp) {
        case '"':
            SS_CHECK(tbuf_put(r, b, "\\\"", 2));
            break;
        case '\\':
            SS_CHECK(tbuf_put(r, b, "\\\\", 2));
            break;
        case '\n':
            SS_CHECK(tbuf_put(r, b, "\\n", 2));
            break;
        case '\r':
            SS_CHECK(tbuf_put(r, b, "\\r", 2));
            break;
        case '\t':
            SS_CHECK(tbuf_put(r, b, "\\t", 2));
            break;
        case '\b':
            SS_CHECK(tbuf_put(r, b, "\\b", 2));
            break;
        case '\f':
            SS_CHECK(tbuf_put(r, b, "\\f", 2));
            break;
        default:
            if (cp < 0x20 || (ensure_ascii && cp >= 0x7f)) {
                if (cp >= 0x10000) {
                    uint32_t v = cp - 0x10000;
                    snprintf(esc, sizeof(esc), "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
                } else {
                    snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
                }
                SS_CHECK(tbuf_puts(r, b, esc));
            } else {
                SS_CHECK(tbuf_put(r, b, p + i, k));
            }
        }
        i += k;
    }
    return tbuf_putc(r, b, '"');
}

typedef struct tv_json_opts {
    int ensure_ascii, sort_keys;
    const char *indent;
    size_t indent_n;
    const char *item_sep, *key_sep;
} tv_json_opts;

static ss_status tv_json_newline(tr *r, tbuf *b, const tv_json_opts *o, int level)
{
    SS_CHECK(tbuf_putc(r, b, '\n'));
    for (int i = 0; i < level; i++)
        SS_CHECK(tbuf_put(r, b, o->indent, o->indent_n));
    return SS_OK;
}

static ss_status tv_json_float(tr *r, tbuf *b, double f)
{
    char num[40];
    if (isnan(f))
        return tbuf_puts(r, b, "NaN");
    if (isinf(f))
        return tbuf_puts(r, b, f < 0 ? "-Infinity" : "Infinity");
    tv_float_repr(f, num);
    return tbuf_puts(r, b, num);
}

static ss_status tv_json_any(tr *r, tbuf *b, tv v, const tv_json_opts *o, int level);

static ss_status tv_json_key(tr *r, tbuf *b, tv k, const tv_json_opts *o)
{
    char num[40];
    switch (k.kind) {
    case TV_STR:
        return tv_json_string(r, b, k.u.s.p, k.u.s.n, o->ensure_ascii);
    case TV_INT:
        snprintf(num, sizeof(num), "\"%lld\"", (long long)k.u.i);
        return tbuf_puts(r, b, num);
    case TV_BOOL:
        return tbuf_puts(r, b, k.u.i ? "\"true\"" : "\"false\"");
    case TV_NONE:
        return tbuf_puts(r, b, "\"null\"");
    case TV_FLOAT:
        SS_CHECK(tbuf_putc(r, b, '"'));
        SS_CHECK(tv_json_float(r, b, k.u.f));
        return tbuf_putc(r, b, '"');
    default:
        return tr_fail(r, SS_ERR_INVALID_ARG, NULL, "keys must be str, int, float, bool or None, not %s",
                       tv_type_name(k));
    }
}

static ss_status tv_json_any(tr *r, tbuf *b, tv v, const tv_json_opts *o, int level)
{
    char num[40];
    if (level > SS_TEMPLATE_MAX_NESTING)
        return tr_fail(r, SS_ERR_CAPACITY, NULL, "value nested too deeply for tojson");
    switch (v.kind) {
    case TV_NONE:
        return tbuf_puts(r, b, "null");
    case TV_BOOL:
        return tbuf_puts(r, b, v.u.i ? "true" : "false");
    case TV_INT:
        snprintf(num, sizeof(num), "%lld", (long long)v.u.i);
        return tbuf_puts(r, b, num);
    case TV_FLOAT:
        return tv_json_float(r, b, v.u.f);
    case TV_STR:
        return tv_json_string(r, b, v.u.s.p, v.u.s.n, o->ensure_ascii);
    case TV_LIST: {
        const tv_list_obj *l = TV_LIST_OF(v);
        if (l->n == 0)
            return tbuf_put(r, b, "[]", 2);
        SS_CHECK(tbuf_putc(r, b, '['));
        for (size_t i = 0; i < l->n; i++) {
            if (i)
                SS_CHECK(tbuf_puts(r, b, o->item_sep));
            if (o->indent)
                SS_CHECK(tv_json_newline(r, b, o, level + 1));
            SS_CHECK(tv_json_any(r, b, l->v[i], o, level + 1));
        }
        if (o->indent)
            SS_CHECK(tv_json_newline(r, b, o, level));
        return tbuf_putc(r, b, ']');
    }
    case TV_DICT: {
        const tv_dict_obj *d = TV_DICT_OF(v);
        if (d->n == 0)
            return tbuf_put(r, b, "{}", 2);
        size_t *order = ss_malloc(d->n * sizeof(size_t));
        if (!order)
            return tr_fail(r, SS_ERR_NOMEM, NULL, "out of memory");
        for (size_t i = 0; i < d->n; i++)
            order[i] = i;
        ss_status st = SS_OK;
        if (o->sort_keys) { /* insertion sort, stable; keys must be mutually orderable */
            for (size_t i = 1; i < d->n && st == SS_OK; i++) {
                size_t x = order[i], j = i;
                while (j > 0) {
                    int c = 0;
                    st = tv_cmp(r, d->k[order[j - 1]], d->k[x], &c);
                    if (st != SS_OK || c <= 0)
                        break;
                    order[j] = order[j - 1];
                    j--;
                }
                order[j] = x;
            }
        }
        if (st == SS_OK)
            st = tbuf_putc(r, b, '{');
        for (size_t i = 0; i < d->n && st == SS_OK; i++) {
            if (i)
                st = tbuf_puts(r, b, o->item_sep);
            if (st == SS_OK && o->indent)
                st = tv_json_newline(r, b, o, level + 1);
            if (st == SS_OK)
                st = tv_json_key(r, b, d->k[order[i]], o);
            if (st == SS_OK)
                st = tbuf_puts(r, b, o->key_sep);
            if (st == SS_OK)
                st = tv_json_any(r, b, d->v[order[i]], o, level + 1);
        }
        ss_free(order);
        SS_CHECK(st);
        if (o->indent)
            SS_CHECK(tv_json_newline(r, b, o, level));
        return tbuf_putc(r, b, '}');
    }
    default:
        return tr_fail(r, SS_ERR_INVALID_ARG, NULL, "Object of type %s is not JSON serializable",
                       v.kind == TV_UNDEF ? "Undefined" : tv_type_name(v));
    }
}

ss_status tv_write_json(tr *r, tbuf *b, tv v, int ensure_ascii, const char *indent, size_t indent_n,
                        const char *item_sep, const char *key_sep, int sort_keys)
{
    tv_json_opts o = {ensure_ascii, sort_keys, indent, indent_n, item_sep, key_sep};
    if (!o.item_sep)
        o.item_sep = indent ? "," : ", ";
    if (!o.key_sep)
        o.key_sep = ": ";
    return tv_json_any(r, b, v, &o, 0);
}
