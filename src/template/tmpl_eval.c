/* tmpl_eval.c — walks the template syntax tree: scopes (one per loop iteration and macro call, as Jinja2
 * has them), statements, expressions with Python operator semantics, macro calls, and the render caps. */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "template/tmpl_internal.h"

/* ---------------------------------------------------------------- scopes */
static void fr_clear(tframe *f)
{
    for (size_t i = 0; i < f->n; i++)
        tv_decref(f->vals[i]);
    ss_free(f->names);
    ss_free(f->vals);
    tm_index_free(&f->ix);
    f->names = NULL;
    f->vals = NULL;
    f->n = f->cap = 0;
}

/* A name being looked up, hashed (once) when the first scope with an index is reached. */
typedef struct fr_key {
    const char *s;
    size_t n;
    uint32_t h;
    int hashed;
} fr_key;

static size_t fr_hash(fr_key *k) /* returns the bytes hashed */
{
    if (k->hashed)
        return 0;
    k->n = strlen(k->s);
    k->h = tm_hash_bytes(k->s, k->n);
    k->hashed = 1;
    return k->n;
}

/* *at: the position of the name in f, -1 when absent. Small scopes are scanned, each name passed a step:
 * a macro of 300 parameters bound 45000 names per call that way. Big ones (the root scope holds every
 * request variable) go through their index, a step per slot probed and one per 16 bytes hashed or compared. */
static ss_status fr_find(tr *r, const tframe *f, fr_key *k, ptrdiff_t *at)
{
    *at = -1;
    if (!f->ix.slot) {
        SS_CHECK(tr_work(r, f->n, 0));
        for (size_t i = f->n; i > 0; i--)
            if (strcmp(f->names[i - 1], k->s) == 0) {
                *at = (ptrdiff_t)i - 1;
                break;
            }
        return SS_OK;
    }
    size_t bytes = fr_hash(k), mask = f->ix.cap - 1, probes = 0;
    for (size_t i = k->h & mask;; i = (i + 1) & mask) {
        const tm_slot *s = &f->ix.slot[i];
        probes++;
        if (!s->at)
            break;
        if (s->hash != k->h)
            continue;
        bytes += k->n;
        if (strcmp(f->names[s->at - 1], k->s) == 0) {
            *at = (ptrdiff_t)s->at - 1;
            break;
        }
    }
    return tr_work(r, probes, bytes);
}

/* Room for one more name in f: its arrays, and its index from TM_INDEX_MIN names on. */
static ss_status fr_reserve(tr *r, tframe *f)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        const char **nn = ss_realloc((void *)f->names, cap * sizeof(*nn));
        if (nn)
            f->names = nn;
        tv *nv = nn ? ss_realloc(f->vals, cap * sizeof(*nv)) : NULL;
        if (nv)
            f->vals = nv;
        if (!nn || !nv)
            return tr_fail(r, SS_ERR_NOMEM, NULL, "out of memory");
        f->cap = cap;
    }
    if (f->n >= UINT32_MAX - 1) /* index slots hold 32-bit positions; no request comes near */
        return tr_fail(r, SS_ERR_CAPACITY, NULL, "more than %u names in one scope", (unsigned)(UINT32_MAX - 2));
    size_t want = tm_index_want(&f->ix, f->n + 1);
    if (!want)
        return SS_OK;
    int fresh = f->ix.slot == NULL;
    if (!tm_index_grow(&f->ix, want))
        return tr_fail(r, SS_ERR_NOMEM, NULL, "out of memory");
    size_t bytes = 0;
    for (size_t i = 0; fresh && i < f->n; i++) {
        fr_key k = {f->names[i], 0, 0, 0};
        bytes += fr_hash(&k);
        tm_index_put(&f->ix, k.h, i);
    }
    /* every name moved (or hashed, when new) once per doubling: a step each, two per bind at most */
    return tr_work(r, f->n, bytes);
}

/* Binds name in frame f (takes val). name is borrowed for the render. */
static ss_status fr_set(tr *r, tframe *f, const char *name, tv val)
{
    fr_key k = {name, 0, 0, 0};
    ptrdiff_t at = -1;
    ss_status st = fr_find(r, f, &k, &at);
    if (st == SS_OK && at >= 0) {
        assert(f->vals); /* a name found has its value */
        tv_decref(f->vals[at]);
        f->vals[at] = val;
        return SS_OK;
    }
    if (st == SS_OK)
        st = fr_reserve(r, f);
    if (st != SS_OK) {
        tv_decref(val);
        return st;
    }
    if (f->ix.slot) {
        fr_hash(&k);
        tm_index_put(&f->ix, k.h, f->n);
    }
    f->names[f->n] = name;
    f->vals[f->n] = val;
    f->n++;
    return SS_OK;
}

/* *hit: the innermost binding of name, NULL when none. The work counts as in fr_find, scope by scope. */
static ss_status fr_lookup(tr *r, const char *name, const tv **hit)
{
    fr_key k = {name, 0, 0, 0};
    *hit = NULL;
    for (const tframe *f = r->cur; f; f = f->parent) {
        ptrdiff_t at;
        SS_CHECK(fr_find(r, f, &k, &at));
        if (at >= 0) {
            *hit = &f->vals[at];
            return SS_OK;
        }
    }
    return SS_OK;
}

ss_status tr_bind(tr *r, const char *name, tv val)
{
    return fr_set(r, r->cur, name, val);
}

/* ---------------------------------------------------------------- attribute / item access */
static ss_status tr_loop_attr(tr *r, tv loop, const char *name, tv *out)
{
    const tv_loop_obj *l = (const tv_loop_obj *)loop.o;
    int64_t i = l->index0, n = l->length;
    const tv_list_obj *items = TV_LIST_OF(l->items);
    if (!strcmp(name, "index"))
        *out = tv_int(i + 1);
    else if (!strcmp(name, "index0"))
        *out = tv_int(i);
    else if (!strcmp(name, "revindex"))
        *out = tv_int(n - i);
    else if (!strcmp(name, "revindex0"))
        *out = tv_int(n - i - 1);
    else if (!strcmp(name, "first"))
        *out = tv_bool(i == 0);
    else if (!strcmp(name, "last"))
        *out = tv_bool(i == n - 1);
    else if (!strcmp(name, "length"))
        *out = tv_int(n);
    else if (!strcmp(name, "depth"))
        *out = tv_int(1);
    else if (!strcmp(name, "depth0"))
        *out = tv_int(0);
    else if (!strcmp(name, "previtem")) {
        if (i > 0) {
            *out = items->v[i - 1];
            tv_incref(*out);
        } else {
            *out = tv_undef("previtem");
        }
    } else if (!strcmp(name, "nextitem")) {
        if (i + 1 < n) {
            *out = items->v[i + 1];
            tv_incref(*out);
        } else {
            *out = tv_undef("nextitem");
        }
    } else {
        (void)r;
        *out = tv_undef(name);
    }
    return SS_OK;
}

ss_status tr_getattr(tr *r, tv obj, const char *name, size_t n, tv *out)
{
    const tv *hit = NULL;
    if (obj.kind == TV_DICT || obj.kind == TV_NS) {
        SS_CHECK(tv_dict_gets(r, obj, name, n, &hit));
    } else if (obj.kind == TV_LOOP)
        return tr_loop_attr(r, obj, name, out);
    if (hit) {
        *out = *hit;
        tv_incref(*out);
    } else {
        *out = tv_undef(name);
    }
    return SS_OK;
}

static int tr_index(tv key, int64_t *idx)
{
    if (key.kind == TV_INT || key.kind == TV_BOOL) {
        *idx = key.u.i;
        return 1;
    }
    return 0;
}

ss_status tr_getitem(tr *r, const tn *at, tv obj, tv key, tv *out)
{
    int64_t i;
    (void)at;
    *out = tv_undef(NULL);
    if (obj.kind == TV_DICT || obj.kind == TV_NS) {
        const tv *hit;
        SS_CHECK(tv_dict_get(r, obj, key, &hit));
        if (hit) {
            *out = *hit;
            tv_incref(*out);
        }
        return SS_OK;
    }
    if (obj.kind == TV_LIST && tr_index(key, &i)) {
        const tv_list_obj *l = TV_LIST_OF(obj);
        if (i < 0)
            i += (int64_t)l->n;
        if (i >= 0 && (size_t)i < l->n) {
            *out = l->v[i];
            tv_incref(*out);
        }
        return SS_OK;
    }
    if (obj.kind == TV_STR && tr_index(key, &i)) {
        SS_CHECK(tr_work(r, 0, obj.u.s.n)); /* code points are counted from the start */
        size_t len = tm_utf8_len(obj.u.s.p, obj.u.s.n);
        if (i < 0)
            i += (int64_t)len;
        if (i >= 0 && (size_t)i < len) {
            size_t off = tm_utf8_offset(obj.u.s.p, obj.u.s.n, (size_t)i);
            uint32_t cp;
            size_t k = tm_utf8_decode(obj.u.s.p + off, obj.u.s.n - off, &cp);
            *out = tv_sborrow(obj.u.s.p + off, k);
            out->o = obj.o;
            tv_incref(*out);
        }
        return SS_OK;
    }
    if (key.kind == TV_STR && (obj.kind == TV_LOOP))
        return tr_getattr(r, obj, key.u.s.p, key.u.s.n, out);
    return SS_OK;
}

/* Python slice indices for a sequence of length n. */
static ss_status tr_slice_indices(tr *r, const tn *at, tv start, tv stop, tv step, int64_t n, int64_t *b, int64_t *e,
                                  int64_t *s)
{
    *s = 1;
    if (step.kind != TV_NONE && step.kind != TV_UNDEF) {
        if (!tr_index(step, s))
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "slice indices must be integers or None");
        if (*s == 0)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "slice step cannot be zero");
        /* a step past the length picks one item either way; clamped, i += step cannot overflow */
        if (*s > n)
            *s = n + 1;
        else if (*s < -n)
            *s = -n - 1;
    }
    int64_t lo = *s < 0 ? -1 : 0, hi = *s < 0 ? n - 1 : n;
    tv ends[2] = {start, stop};
    int64_t *dst[2] = {b, e};
    for (int k = 0; k < 2; k++) {
        int64_t v;
        if (ends[k].kind == TV_NONE || ends[k].kind == TV_UNDEF) {
            if (*s < 0)
                *dst[k] = k == 0 ? hi : lo;
            else
                *dst[k] = k == 0 ? lo : hi;
            continue;
        }
        if (!tr_index(ends[k], &v))
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "slice indices must be integers or None");
        if (v < 0) {
            v += n;
            if (v < lo)
                v = lo;
        } else if (v > hi) {
            v = hi;
        }
        *dst[k] = v;
    }
    return SS_OK;
}

static ss_status tr_slice(tr *r, const tn *at, tv obj, tv start, tv stop, tv step, tv *out)
{
    int64_t b, e, s;
    if (obj.kind == TV_LIST) {
        const tv_list_obj *l = TV_LIST_OF(obj);
        SS_CHECK(tr_slice_indices(r, at, start, stop, step, (int64_t)l->n, &b, &e, &s));
        SS_CHECK(tv_list_new(r, 0, l->tuple, out));
        for (int64_t i = b; s > 0 ? i < e : i > e; i += s) {
            tv_incref(l->v[i]);
            ss_status st = tv_list_push(r, *out, l->v[i]);
            if (st != SS_OK)
                return st;
        }
        return SS_OK;
    }
    if (obj.kind == TV_STR) {
        /* offsets of every code point, then copy the chosen ones */
        SS_CHECK(tr_work(r, 0, obj.u.s.n));
        size_t len = tm_utf8_len(obj.u.s.p, obj.u.s.n);
        SS_CHECK(tr_slice_indices(r, at, start, stop, step, (int64_t)len, &b, &e, &s));
        if (s == 1 && b <= e) {
            size_t ob = tm_utf8_offset(obj.u.s.p, obj.u.s.n, (size_t)b);
            size_t oe = tm_utf8_offset(obj.u.s.p, obj.u.s.n, (size_t)e);
            *out = tv_sborrow(obj.u.s.p + ob, oe - ob);
            out->o = obj.o;
            tv_incref(*out);
            return SS_OK;
        }
        size_t *offs = ss_malloc((len + 1) * sizeof(size_t));
        if (!offs)
            return tr_fail(r, SS_ERR_NOMEM, at, "out of memory");
        size_t o = 0;
        uint32_t cp;
        for (size_t i = 0; i < len; i++) {
            offs[i] = o;
            o += tm_utf8_decode(obj.u.s.p + o, obj.u.s.n - o, &cp);
        }
        offs[len] = o;
        tbuf buf = {0};
        ss_status st = SS_OK;
        for (int64_t i = b; st == SS_OK && (s > 0 ? i < e : i > e); i += s)
            st = tbuf_put(r, &buf, obj.u.s.p + offs[i], offs[i + 1] - offs[i]);
        ss_free(offs);
        if (st != SS_OK) {
            tbuf_free(&buf);
            return st;
        }
        return tv_str_take(r, &buf, out);
    }
    if (obj.kind == TV_UNDEF) {
        *out = tv_undef(obj.u.undef);
        return SS_OK;
    }
    return tr_fail(r, SS_ERR_INVALID_ARG, at, "'%s' object is not subscriptable", tv_type_name(obj));
}

/* ---------------------------------------------------------------- operators */
static ss_status tr_undef_err(tr *r, const tn *at, tv v)
{
    if (v.u.undef)
        return tr_fail(r, SS_ERR_INVALID_ARG, at, "'%s' is undefined", v.u.undef);
    return tr_fail(r, SS_ERR_INVALID_ARG, at, "value is undefined");
}

static int tr_isnum(tv v)
{
    return v.kind == TV_INT || v.kind == TV_BOOL || v.kind == TV_FLOAT;
}
static double tr_num(tv v)
{
    return v.kind == TV_FLOAT ? v.u.f : (double)v.u.i;
}

static ss_status tr_repeat(tr *r, const tn *at, tv seq, int64_t times, tv *out)
{
    /* An empty sequence stays empty however many times it is repeated: no round is run (the size limits
     * below do not bound the rounds of an empty one, and `[] * 10**13` looped for hours in the fuzzer). */
    if (times < 0 || (seq.kind == TV_STR ? seq.u.s.n == 0 : TV_LIST_OF(seq)->n == 0))
        times = 0;
    if (seq.kind == TV_STR) {
        if (seq.u.s.n && (uint64_t)times > SS_TEMPLATE_MAX_OUTPUT / seq.u.s.n)
            return tr_fail(r, SS_ERR_CAPACITY, at, "string repetition exceeds %zu bytes",
                           (size_t)SS_TEMPLATE_MAX_OUTPUT);
        tbuf b = {0};
        for (int64_t i = 0; i < times; i++) {
            ss_status st = tbuf_put(r, &b, seq.u.s.p, seq.u.s.n);
            if (st != SS_OK) {
                tbuf_free(&b);
                return st;
            }
        }
        return tv_str_take(r, &b, out);
    }
    const tv_list_obj *l = TV_LIST_OF(seq);
    if (l->n && (uint64_t)times > (uint64_t)SS_TEMPLATE_MAX_LOOP_ITERS / l->n)
        return tr_fail(r, SS_ERR_CAPACITY, at, "list repetition longer than %lld items",
                       (long long)SS_TEMPLATE_MAX_LOOP_ITERS);
    SS_CHECK(tv_list_new(r, 0, l->tuple, out));
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < l->n; k++) {
            tv_incref(l->v[k]);
            SS_CHECK(tv_list_push(r, *out, l->v[k]));
        }
    return SS_OK;
}

static ss_status tr_binop(tr *r, const tn *at, int op, tv a, tv b, tv *out)
{
    static const char *const names[] = {"+", "-", "*", "/", "//", "%", "**", "~"};
    if (op == OP_CONCAT) {
        tbuf buf = {0};
        ss_status st = tv_write_str(r, &buf, a);
        if (st == SS_OK)
            st = tv_write_str(r, &buf, b);
        if (st != SS_OK) {
            tbuf_free(&buf);
            return st;
        }
        return tv_str_take(r, &buf, out);
    }
    if (a.kind == TV_UNDEF)
        return tr_undef_err(r, at, a);
    if (b.kind == TV_UNDEF)
        return tr_undef_err(r, at, b);
    if (tr_isnum(a) && tr_isnum(b)) {
        int ints = a.kind != TV_FLOAT && b.kind != TV_FLOAT;
        int64_t x = a.u.i, y = b.u.i, z;
        double fx = tr_num(a), fy = tr_num(b);
        switch (op) {
        case OP_ADD:
            if (ints) {
                if (__builtin_add_overflow(x, y, &z))
                    goto overflow;
                *out = tv_int(z);
            } else {
                *out = tv_float(fx + fy);
            }
            return SS_OK;
        case OP_SUB:
            if (ints) {
                if (__builtin_sub_overflow(x, y, &z))
                    goto overflow;
                *out = tv_int(z);
            } else {
                *out = tv_float(fx - fy);
            }
            return SS_OK;
        case OP_MUL:
            if (ints) {
                if (__builtin_mul_overflow(x, y, &z))
                    goto overflow;
                *out = tv_int(z);
            } else {
                *out = tv_float(fx * fy);
            }
            return SS_OK;
        case OP_DIV:
            if (fy == 0.0)
                return tr_fail(r, SS_ERR_INVALID_ARG, at, "division by zero");
            *out = tv_float(fx / fy);
            return SS_OK;
        case OP_FLOORDIV:
        case OP_MOD:
            if ((ints && y == 0) || (!ints && fy == 0.0))
                return tr_fail(r, SS_ERR_INVALID_ARG, at, "integer division or modulo by zero");
            if (ints) {
                if (x == INT64_MIN && y == -1)
                    goto overflow;
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) {
                    q -= 1;
                    m += y;
                }
                *out = tv_int(op == OP_MOD ? m : q);
            } else {
                double m = fmod(fx, fy);
                if (m != 0.0 && ((m < 0) != (fy < 0)))
                    m += fy;
                *out = tv_float(op == OP_MOD ? m : floor(fx / fy));
            }
            return SS_OK;
        case OP_POW:
            if (ints && y >= 0) {
                int64_t acc = 1, base = x;
                int64_t e = y;
                while (e > 0) {
                    if (e & 1) {
                        if (__builtin_mul_overflow(acc, base, &acc))
                            goto overflow;
                    }
                    e >>= 1;
                    if (e > 0 && __builtin_mul_overflow(base, base, &base))
                        goto overflow;
                }
                *out = tv_int(acc);
            } else {
                *out = tv_float(pow(fx, fy));
            }
            return SS_OK;
        }
    }
    if (op == OP_ADD && a.kind == TV_STR && b.kind == TV_STR) {
        tbuf buf = {0};
        ss_status st = tbuf_put(r, &buf, a.u.s.p, a.u.s.n);
        if (st == SS_OK)
            st = tbuf_put(r, &buf, b.u.s.p, b.u.s.n);
        if (st != SS_OK) {
            tbuf_free(&buf);
            return st;
        }
        return tv_str_take(r, &buf, out);
    }
    if (op == OP_ADD && a.kind == TV_LIST && b.kind == TV_LIST && TV_LIST_OF(a)->tuple == TV_LIST_OF(b)->tuple) {
        SS_CHECK(tv_list_new(r, 0, TV_LIST_OF(a)->tuple, out));
        const tv_list_obj *ls[2] = {TV_LIST_OF(a), TV_LIST_OF(b)};
        for (int k = 0; k < 2; k++)
            for (size_t i = 0; i < ls[k]->n; i++) {
                tv_incref(ls[k]->v[i]);
                SS_CHECK(tv_list_push(r, *out, ls[k]->v[i]));
            }
        return SS_OK;
    }
    if (op == OP_MUL && (a.kind == TV_STR || a.kind == TV_LIST) && (b.kind == TV_INT || b.kind == TV_BOOL))
        return tr_repeat(r, at, a, b.u.i, out);
    if (op == OP_MUL && (b.kind == TV_STR || b.kind == TV_LIST) && (a.kind == TV_INT || a.kind == TV_BOOL))
        return tr_repeat(r, at, b, a.u.i, out);
    if (op == OP_MOD && a.kind == TV_STR)
        return tr_fail(r, SS_ERR_UNSUPPORTED, at, "printf-style string formatting ('%%' on a string) is not supported");
    return tr_fail(r, SS_ERR_INVALID_ARG, at, "unsupported operand type(s) for %s: '%s' and '%s'", names[op],
                   tv_type_name(a), tv_type_name(b));
overflow:
    return tr_fail(r, SS_ERR_UNSUPPORTED, at, "integer overflow in '%s' (only 64-bit integers are supported)",
                   names[op]);
}

static ss_status tr_contains(tr *r, const tn *at, tv needle, tv hay, int *res)
{
    *res = 0;
    switch (hay.kind) {
    case TV_STR:
        if (needle.kind != TV_STR)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "'in <string>' requires string as left operand, not %s",
                           tv_type_name(needle));
        SS_CHECK(tr_work(r, 0, hay.u.s.n));
        *res = needle.u.s.n == 0 ||
               (hay.u.s.n >= needle.u.s.n && memmem(hay.u.s.p, hay.u.s.n, needle.u.s.p, needle.u.s.n) != NULL);
        return SS_OK;
    case TV_LIST: {
        const tv_list_obj *l = TV_LIST_OF(hay);
        for (size_t i = 0; i < l->n && !*res; i++)
            SS_CHECK(tv_equal(r, l->v[i], needle, res));
        return SS_OK;
    }
    case TV_DICT:
    case TV_NS: {
        const tv *hit;
        SS_CHECK(tv_dict_get(r, hay, needle, &hit));
        *res = hit != NULL;
        return SS_OK;
    }
    case TV_UNDEF:
        return SS_OK;
    default:
        return tr_fail(r, SS_ERR_INVALID_ARG, at, "argument of type '%s' is not iterable", tv_type_name(hay));
    }
}

static ss_status tr_compare(tr *r, const tn *at, int op, tv a, tv b, int *res)
{
    int c;
    switch (op) {
    case OP_EQ:
        return tv_equal(r, a, b, res);
    case OP_NE:
        SS_CHECK(tv_equal(r, a, b, res));
        *res = !*res;
        return SS_OK;
    case OP_IN:
        return tr_contains(r, at, a, b, res);
    case OP_NOTIN:
        SS_CHECK(tr_contains(r, at, a, b, res));
        *res = !*res;
        return SS_OK;
    default:
        if (a.kind == TV_UNDEF)
            return tr_undef_err(r, at, a);
        if (b.kind == TV_UNDEF)
            return tr_undef_err(r, at, b);
        r->cur_node = at;
        SS_CHECK(tv_cmp(r, a, b, &c));
        *res = op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0;
        return SS_OK;
    }
}

/* ---------------------------------------------------------------- calls */
typedef struct tr_args {
    tv pos[16];
    size_t npos;
    const char *kwn[16];
    tv kwv[16];
    size_t nkw;
} tr_args;

static void tr_args_free(tr_args *a)
{
    for (size_t i = 0; i < a->npos; i++)
        tv_decref(a->pos[i]);
    for (size_t i = 0; i < a->nkw; i++)
        tv_decref(a->kwv[i]);
    a->npos = a->nkw = 0;
}

static ss_status tr_eval_args(tr *r, const tn *call, tr_args *a)
{
    a->npos = a->nkw = 0;
    if (call->nkids > 16)
        return tr_fail(r, SS_ERR_UNSUPPORTED, call, "more than 16 arguments in one call");
    for (size_t i = 0; i < call->nkids; i++) {
        const tn *k = call->kids[i];
        tv v;
        ss_status st = tr_eval(r, k->kind == N_KWARG ? k->a : k, &v);
        if (st != SS_OK) {
            tr_args_free(a);
            return st;
        }
        if (k->kind == N_KWARG) {
            a->kwn[a->nkw] = k->s;
            a->kwv[a->nkw++] = v;
        } else {
            a->pos[a->npos++] = v;
        }
    }
    return SS_OK;
}

ss_status tr_call_macro(tr *r, const tn *macro, const tn *call, const tv *args, size_t nargs,
                        const char *const *kwnames, const tv *kwvals, size_t nkw, tv *out)
{
    if (nargs > macro->nkids)
        return tr_fail(r, SS_ERR_INVALID_ARG, call, "macro '%s' takes not more than %zu argument(s)", macro->s,
                       macro->nkids);
    for (size_t k = 0; k < nkw; k++) {
        size_t i;
        for (i = 0; i < macro->nkids; i++)
            if (!strcmp(macro->kids[i]->s, kwnames[k]))
                break;
        if (i == macro->nkids)
            return tr_fail(r, SS_ERR_INVALID_ARG, call, "macro '%s' has no argument named '%s'", macro->s, kwnames[k]);
        if (i < nargs)
            return tr_fail(r, SS_ERR_INVALID_ARG, call, "macro '%s' got multiple values for argument '%s'", macro->s,
                           kwnames[k]);
    }
    if (r->depth >= SS_TEMPLATE_MAX_CALL_DEPTH)
        return tr_fail(r, SS_ERR_CAPACITY, call, "macro calls nested more than %d deep (runaway recursion?)",
                       SS_TEMPLATE_MAX_CALL_DEPTH);
    tframe frame = {.parent = r->root};
    tframe *saved_cur = r->cur;
    tbuf *saved_out = r->out;
    int saved_nest = r->nest;
    tbuf buf = {0};
    r->cur = &frame;
    r->out = &buf;
    r->nest = 0; /* each macro call nests expressions afresh, as its body did in the source */
    r->depth++;
    ss_status st = SS_OK;
    for (size_t i = 0; i < macro->nkids && st == SS_OK; i++) {
        const tn *pa = macro->kids[i];
        tv v = tv_undef(pa->s);
        int have = 0;
        if (i < nargs) {
            v = args[i];
            tv_incref(v);
            have = 1;
        }
        for (size_t k = 0; k < nkw && !have; k++)
            if (!strcmp(pa->s, kwnames[k])) {
                v = kwvals[k];
                tv_incref(v);
                have = 1;
            }
        if (!have && pa->a)
            st = tr_eval(r, pa->a, &v);
        if (st == SS_OK)
            st = fr_set(r, &frame, pa->s, v);
    }
    if (st == SS_OK)
        st = tr_exec_body(r, macro->b);
    r->depth--;
    r->nest = saved_nest;
    r->cur = saved_cur;
    r->out = saved_out;
    r->jump = 0;
    fr_clear(&frame);
    if (st != SS_OK) {
        tbuf_free(&buf);
        return st;
    }
    return tv_str_take(r, &buf, out);
}

ss_status tr_call_value(tr *r, const tn *at, tv callee, const tv *args, size_t nargs, const char *const *kwnames,
                        const tv *kwvals, size_t nkw, tv *out)
{
    if (callee.kind == TV_MACRO)
        return tr_call_macro(r, callee.u.macro, at, args, nargs, kwnames, kwvals, nkw, out);
    if (callee.kind == TV_FUNC)
        return tb_global_call(r, at, (int)callee.u.i, args, nargs, kwnames, kwvals, nkw, out);
    if (callee.kind == TV_UNDEF)
        return tr_undef_err(r, at, callee);
    return tr_fail(r, SS_ERR_INVALID_ARG, at, "'%s' object is not callable", tv_type_name(callee));
}

static ss_status tr_eval_call(tr *r, const tn *e, tv *out)
{
    tr_args a;
    const tn *fn = e->a;
    tv obj = tv_none(), callee = tv_none();
    ss_status st;
    if (fn->kind == N_ATTR) {
        SS_CHECK(tr_eval(r, fn->a, &obj));
        st = tr_eval_args(r, e, &a);
        if (st != SS_OK) {
            tv_decref(obj);
            return st;
        }
        int handled = 0;
        r->cur_node = e;
        st = tb_method(r, e, obj, fn->s, a.pos, a.npos, a.kwn, a.kwv, a.nkw, out, &handled);
        if (st == SS_OK && !handled) {
            st = tr_getattr(r, obj, fn->s, fn->n, &callee);
            if (st == SS_OK && callee.kind == TV_UNDEF && obj.kind != TV_DICT && obj.kind != TV_NS)
                st = tr_fail(r, SS_ERR_UNSUPPORTED, e, "'%s' object has no method '%s' (not supported)",
                             tv_type_name(obj), fn->s);
            if (st == SS_OK)
                st = tr_call_value(r, e, callee, a.pos, a.npos, a.kwn, a.kwv, a.nkw, out);
        }
        tv_decref(callee);
        tv_decref(obj);
        tr_args_free(&a);
        return st;
    }
    SS_CHECK(tr_eval(r, fn, &callee));
    st = tr_eval_args(r, e, &a);
    if (st == SS_OK) {
        st = tr_call_value(r, e, callee, a.pos, a.npos, a.kwn, a.kwv, a.nkw, out);
        tr_args_free(&a);
    }
    tv_decref(callee);
    return st;
}

/* ---------------------------------------------------------------- expressions */
static ss_status tr_eval_seq(tr *r, const tn *e, int tuple, tv *out)
{
    SS_CHECK(tv_list_new(r, e->nkids, tuple, out));
    for (size_t i = 0; i < e->nkids; i++) {
        tv v;
        SS_CHECK(tr_eval(r, e->kids[i], &v));
        SS_CHECK(tv_list_push(r, *out, v));
    }
    return SS_OK;
}

static ss_status tr_eval_inner(tr *r, const tn *e, tv *out)
{
    tv a, b, c;
    ss_status st;
    switch (e->kind) {
    case N_STR:
        *out = tv_sborrow(e->s, e->n);
        return SS_OK;
    case N_INT:
        *out = tv_int(e->i);
        return SS_OK;
    case N_FLOAT:
        *out = tv_float(e->f);
        return SS_OK;
    case N_BOOL:
        *out = tv_bool((int)e->i);
        return SS_OK;
    case N_NONE:
        *out = tv_none();
        return SS_OK;
    case N_NAME: {
        const tv *hit;
        SS_CHECK(fr_lookup(r, e->s, &hit));
        if (hit) {
            *out = *hit;
            tv_incref(*out);
            return SS_OK;
        }
        int fn = tb_global_id(e->s);
        if (fn >= 0) {
            out->kind = TV_FUNC;
            out->u.i = fn;
            out->o = NULL;
        } else {
            *out = tv_undef(e->s);
        }
        return SS_OK;
    }
    case N_LIST:
        return tr_eval_seq(r, e, 0, out);
    case N_TUPLE:
        return tr_eval_seq(r, e, 1, out);
    case N_DICT:
        SS_CHECK(tv_dict_new(r, e->nkids / 2, 0, out));
        for (size_t i = 0; i + 1 < e->nkids; i += 2) {
            SS_CHECK(tr_eval(r, e->kids[i], &a));
            if (a.kind == TV_LIST || a.kind == TV_DICT || a.kind == TV_NS) {
                tv_decref(a);
                return tr_fail(r, SS_ERR_INVALID_ARG, e->kids[i], "unhashable dict key");
            }
            st = tr_eval(r, e->kids[i + 1], &b);
            if (st != SS_OK) {
                tv_decref(a);
                return st;
            }
            SS_CHECK(tv_dict_set(r, *out, a, b));
        }
        return SS_OK;
    case N_BINOP:
        SS_CHECK(tr_eval(r, e->a, &a));
        st = tr_eval(r, e->b, &b);
        if (st == SS_OK) {
            st = tr_binop(r, e, e->op, a, b, out);
            tv_decref(b);
        }
        tv_decref(a);
        return st;
    case N_NEG:
    case N_POS:
        SS_CHECK(tr_eval(r, e->a, &a));
        if (a.kind == TV_INT || a.kind == TV_BOOL) {
            if (e->kind == N_NEG && a.u.i == INT64_MIN)
                return tr_fail(r, SS_ERR_UNSUPPORTED, e, "integer overflow in unary '-'");
            *out = tv_int(e->kind == N_NEG ? -a.u.i : a.u.i);
        } else if (a.kind == TV_FLOAT) {
            *out = tv_float(e->kind == N_NEG ? -a.u.f : a.u.f);
        } else {
            st = a.kind == TV_UNDEF ? tr_undef_err(r, e, a)
                                    : tr_fail(r, SS_ERR_INVALID_ARG, e, "bad operand type for unary %s: '%s'",
                                              e->kind == N_NEG ? "-" : "+", tv_type_name(a));
            tv_decref(a);
            return st;
        }
        return SS_OK;
    case N_NOT:
        SS_CHECK(tr_eval(r, e->a, &a));
        *out = tv_bool(!tv_truthy(a));
        tv_decref(a);
        return SS_OK;
    case N_AND:
    case N_OR:
        SS_CHECK(tr_eval(r, e->a, &a));
        if (tv_truthy(a) == (e->kind == N_OR)) {
            *out = a;
            return SS_OK;
        }
        tv_decref(a);
        return tr_eval(r, e->b, out);
    case N_COMPARE: {
        SS_CHECK(tr_eval(r, e->a, &a));
        int res = 1;
        st = SS_OK;
        for (size_t i = 0; i < e->nkids && res && st == SS_OK; i++) {
            st = tr_eval(r, e->kids[i]->a, &b);
            if (st != SS_OK)
                break;
            st = tr_compare(r, e->kids[i], e->kids[i]->op, a, b, &res);
            tv_decref(a);
            a = b;
        }
        tv_decref(a);
        SS_CHECK(st);
        *out = tv_bool(res);
        return SS_OK;
    }
    case N_COND:
        SS_CHECK(tr_eval(r, e->a, &c));
        int yes = tv_truthy(c);
        tv_decref(c);
        if (yes)
            return tr_eval(r, e->b, out);
        if (e->c)
            return tr_eval(r, e->c, out);
        *out = tv_undef(NULL);
        return SS_OK;
    case N_ATTR:
        SS_CHECK(tr_eval(r, e->a, &a));
        st = tr_getattr(r, a, e->s, e->n, out);
        tv_decref(a);
        return st;
    case N_ITEM:
        SS_CHECK(tr_eval(r, e->a, &a));
        st = tr_eval(r, e->b, &b);
        if (st == SS_OK) {
            st = tr_getitem(r, e, a, b, out);
            tv_decref(b);
        }
        tv_decref(a);
        return st;
    case N_SLICE: {
        tv parts[3] = {tv_none(), tv_none(), tv_none()};
        const tn *pn[3] = {e->b, e->c, e->d};
        SS_CHECK(tr_eval(r, e->a, &a));
        st = SS_OK;
        for (int i = 0; i < 3 && st == SS_OK; i++)
            if (pn[i])
                st = tr_eval(r, pn[i], &parts[i]);
        if (st == SS_OK)
            st = tr_slice(r, e, a, parts[0], parts[1], parts[2], out);
        for (int i = 0; i < 3; i++)
            tv_decref(parts[i]);
        tv_decref(a);
        return st;
    }
    case N_CALL:
        return tr_eval_call(r, e, out);
    case N_FILTER:
    case N_TEST: {
        SS_CHECK(tr_eval(r, e->a, &a));
        tr_args args;
        st = tr_eval_args(r, e, &args);
        if (st != SS_OK) {
            tv_decref(a);
            return st;
        }
        r->cur_node = e;
        if (e->kind == N_FILTER) {
            st = tb_filter(r, e, e->op, a, args.pos, args.npos, args.kwn, args.kwv, args.nkw, out);
        } else {
            int res = 0;
            if (args.nkw)
                st = tr_fail(r, SS_ERR_INVALID_ARG, e, "test '%s' takes no keyword arguments", e->s);
            else
                st = tb_test(r, e, e->op, a, args.pos, args.npos, &res);
            *out = tv_bool(e->i ? !res : res);
        }
        tr_args_free(&args);
        tv_decref(a);
        return st;
    }
    default:
        return tr_fail(r, SS_ERR_INTERNAL, e, "unexpected node %d in expression", (int)e->kind);
    }
}

ss_status tr_eval(tr *r, const tn *e, tv *out)
{
    SS_CHECK(tr_step(r, e));
    /* the parser bounds brackets, but a + b + ... and x|f|g... chain without bound and recurse here */
    if (r->nest >= SS_TEMPLATE_MAX_NESTING)
        return tr_fail(r, SS_ERR_CAPACITY, e, "expression nested more than %d deep", SS_TEMPLATE_MAX_NESTING);
    const tn *saved = r->cur_node;
    r->cur_node = e;
    r->nest++;
    ss_status st = tr_eval_inner(r, e, out);
    r->nest--;
    r->cur_node = saved;
    return st;
}

/* ---------------------------------------------------------------- statements */
static ss_status tr_assign(tr *r, const tn *target, tv val) /* takes val */
{
    if (target->kind == N_NAME)
        return fr_set(r, r->cur, target->s, val);
    if (target->kind == N_ATTR) {
        const tv *ns;
        ss_status st = fr_lookup(r, target->a->s, &ns);
        if (st == SS_OK && (!ns || ns->kind != TV_NS))
            st = tr_fail(r, SS_ERR_INVALID_ARG, target, "cannot assign attribute on non-namespace object '%s'",
                         target->a->s);
        if (st != SS_OK) {
            tv_decref(val);
            return st;
        }
        return tv_dict_set(r, *ns, tv_sborrow(target->s, target->n), val);
    }
    /* tuple unpacking */
    ss_status st = SS_OK;
    tv list;
    if (val.kind == TV_LIST) {
        list = val;
        tv_incref(list);
    } else {
        st = tb_to_list(r, target, val, &list);
    }
    tv_decref(val);
    SS_CHECK(st);
    const tv_list_obj *l = TV_LIST_OF(list);
    if (l->n != target->nkids) {
        st = tr_fail(r, SS_ERR_INVALID_ARG, target, "%s values to unpack (expected %zu, got %zu)",
                     l->n < target->nkids ? "not enough" : "too many", target->nkids, l->n);
    }
    for (size_t i = 0; i < target->nkids && st == SS_OK; i++) {
        tv_incref(l->v[i]);
        st = fr_set(r, r->cur, target->kids[i]->s, l->v[i]);
    }
    tv_decref(list);
    return st;
}

static ss_status tr_render_body(tr *r, const tn *body, tv *out)
{
    tbuf *saved = r->out;
    tbuf buf = {0};
    r->out = &buf;
    ss_status st = tr_exec_body(r, body);
    r->out = saved;
    if (st != SS_OK) {
        tbuf_free(&buf);
        return st;
    }
    return tv_str_take(r, &buf, out);
}

static ss_status tr_for(tr *r, const tn *s)
{
    tv seq, items;
    SS_CHECK(tr_eval(r, s->b, &seq));
    ss_status st = tb_to_list(r, s->b, seq, &items);
    tv_decref(seq);
    SS_CHECK(st);
    tframe *outer = r->cur;
    if (s->e) { /* {% for x in xs if cond %}: filter first, so loop.length counts what remains */
        tv kept;
        st = tv_list_new(r, 0, 0, &kept);
        const tv_list_obj *l = TV_LIST_OF(items);
        for (size_t i = 0; i < l->n && st == SS_OK; i++) {
            tframe f = {.parent = outer};
            r->cur = &f;
            tv_incref(l->v[i]);
            st = tr_assign(r, s->a, l->v[i]);
            tv c;
            if (st == SS_OK)
                st = tr_eval(r, s->e, &c);
            if (st == SS_OK) {
                if (tv_truthy(c)) {
                    tv_incref(l->v[i]);
                    st = tv_list_push(r, kept, l->v[i]);
                }
                tv_decref(c);
            }
            r->cur = outer;
            fr_clear(&f);
        }
        tv_decref(items);
        SS_CHECK(st);
        items = kept;
    }
    const tv_list_obj *l = TV_LIST_OF(items);
    if (l->n == 0) {
        tv_decref(items);
        return s->d ? tr_exec_body(r, s->d) : SS_OK;
    }
    tv loop;
    st = tv_loop_new(r, items, &loop);
    if (st != SS_OK) {
        tv_decref(items);
        return st;
    }
    for (size_t i = 0; i < l->n && st == SS_OK; i++) {
        if (++r->iters > SS_TEMPLATE_MAX_LOOP_ITERS) {
            st = tr_fail(r, SS_ERR_CAPACITY, s, "template exceeded %lld loop iterations",
                         (long long)SS_TEMPLATE_MAX_LOOP_ITERS);
            break;
        }
        ((tv_loop_obj *)loop.o)->index0 = (int64_t)i;
        tframe f = {.parent = outer};
        r->cur = &f;
        tv_incref(l->v[i]);
        st = tr_assign(r, s->a, l->v[i]);
        if (st == SS_OK) {
            tv_incref(loop);
            st = fr_set(r, &f, "loop", loop);
        }
        if (st == SS_OK)
            st = tr_exec_body(r, s->c);
        r->cur = outer;
        fr_clear(&f);
        int jump = r->jump;
        r->jump = 0;
        if (jump == 1)
            break;
    }
    tv_decref(loop);
    tv_decref(items);
    return st;
}

static ss_status tr_exec(tr *r, const tn *s)
{
    tv v;
    ss_status st;
    switch (s->kind) {
    case N_DATA:
        return tbuf_put(r, r->out, s->s, s->n);
    case N_OUTPUT:
        SS_CHECK(tr_eval(r, s->a, &v));
        r->cur_node = s;
        st = tv_write_str(r, r->out, v);
        tv_decref(v);
        return st;
    case N_IF:
        for (const tn *br = s; br;) {
            if (br->kind != N_IF)
                return tr_exec_body(r, br);
            SS_CHECK(tr_eval(r, br->a, &v));
            int yes = tv_truthy(v);
            tv_decref(v);
            if (yes)
                return tr_exec_body(r, br->b);
            br = br->c;
            if (br)
                SS_CHECK(tr_step(r, br));
        }
        return SS_OK;
    case N_FOR:
        return tr_for(r, s);
    case N_SET:
        SS_CHECK(tr_eval(r, s->b, &v));
        return tr_assign(r, s->a, v);
    case N_SET_BLOCK:
        SS_CHECK(tr_render_body(r, s->b, &v));
        return tr_assign(r, s->a, v);
    case N_MACRO:
        v.kind = TV_MACRO;
        v.u.macro = s;
        v.o = NULL;
        return fr_set(r, r->cur, s->s, v);
    case N_BREAK:
        r->jump = 1;
        return SS_OK;
    case N_CONTINUE:
        r->jump = 2;
        return SS_OK;
    case N_FILTER_BLOCK: {
        tv body, res;
        tr_args a;
        SS_CHECK(tr_render_body(r, s->a, &body));
        st = tr_eval_args(r, s, &a);
        if (st == SS_OK) {
            r->cur_node = s;
            st = tb_filter(r, s, s->op, body, a.pos, a.npos, a.kwn, a.kwv, a.nkw, &res);
            tr_args_free(&a);
            if (st == SS_OK) {
                st = tv_write_str(r, r->out, res);
                tv_decref(res);
            }
        }
        tv_decref(body);
        return st;
    }
    case N_BODY:
        return tr_exec_body(r, s);
    default:
        return tr_fail(r, SS_ERR_INTERNAL, s, "unexpected node %d in statement", (int)s->kind);
    }
}

ss_status tr_exec_body(tr *r, const tn *body)
{
    if (!body)
        return SS_OK;
    for (size_t i = 0; i < body->nkids; i++) {
        const tn *s = body->kids[i];
        SS_CHECK(tr_step(r, s));
        r->cur_node = s;
        SS_CHECK(tr_exec(r, s));
        if (r->jump)
            return SS_OK;
    }
    return SS_OK;
}
