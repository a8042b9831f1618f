/* tmpl_builtins.c — the filters, tests, globals (range, namespace, raise_exception, strftime_now, dict)
 * and Python str/dict methods that chat templates use, with the semantics of Jinja2 and Python 3. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "template/tmpl_internal.h"

enum {
    F_ABS,
    F_CAPITALIZE,
    F_DEFAULT,
    F_DICTSORT,
    F_ESCAPE,
    F_FIRST,
    F_FLOAT,
    F_INDENT,
    F_INT,
    F_ITEMS,
    F_JOIN,
    F_LAST,
    F_LENGTH,
    F_LIST,
    F_LOWER,
    F_MAP,
    F_MAX,
    F_MIN,
    F_REJECT,
    F_REJECTATTR,
    F_REPLACE,
    F_REVERSE,
    F_ROUND,
    F_SAFE,
    F_SELECT,
    F_SELECTATTR,
    F_SORT,
    F_STRING,
    F_SUM,
    F_TITLE,
    F_TOJSON,
    F_TRIM,
    F_UNIQUE,
    F_UPPER,
};

static const struct {
    const char *name;
    int id;
} tb_filters[] = {
    {"abs", F_ABS},
    {"capitalize", F_CAPITALIZE},
    {"count", F_LENGTH},
    {"d", F_DEFAULT},
    {"default", F_DEFAULT},
    {"dictsort", F_DICTSORT},
    {"e", F_ESCAPE},
    {"escape", F_ESCAPE},
    {"first", F_FIRST},
    {"float", F_FLOAT},
    {"indent", F_INDENT},
    {"int", F_INT},
    {"items", F_ITEMS},
    {"join", F_JOIN},
    {"last", F_LAST},
    {"length", F_LENGTH},
    {"list", F_LIST},
    {"lower", F_LOWER},
    {"map", F_MAP},
    {"max", F_MAX},
    {"min", F_MIN},
    {"reject", F_REJECT},
    {"rejectattr", F_REJECTATTR},
    {"replace", F_REPLACE},
    {"reverse", F_REVERSE},
    {"round", F_ROUND},
    {"safe", F_SAFE},
    {"select", F_SELECT},
    {"selectattr", F_SELECTATTR},
    {"sort", F_SORT},
    {"string", F_STRING},
    {"sum", F_SUM},
    {"title", F_TITLE},
    {"tojson", F_TOJSON},
    {"trim", F_TRIM},
    {"unique", F_UNIQUE},
    {"upper", F_UPPER},
    {NULL, 0},
};

enum {
    T_DEFINED,
    T_UNDEFINED,
    T_NONE,
    T_STRING,
    T_MAPPING,
    T_ITERABLE,
    T_SEQUENCE,
    T_NUMBER,
    T_INTEGER,
    T_FLOAT,
    T_BOOLEAN,
    T_TRUE,
    T_FALSE,
    T_ODD,
    T_EVEN,
    T_DIVISIBLEBY,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_IN,
    T_CALLABLE,
    T_LOWER,
    T_UPPER,
    T_SAMEAS,
    T_ESCAPED,
};

static const struct {
    const char *name;
    int id;
} tb_tests[] = {
    {"defined", T_DEFINED},
    {"undefined", T_UNDEFINED},
    {"none", T_NONE},
    {"string", T_STRING},
    {"mapping", T_MAPPING},
    {"iterable", T_ITERABLE},
    {"sequence", T_SEQUENCE},
    {"number", T_NUMBER},
    {"integer", T_INTEGER},
    {"float", T_FLOAT},
    {"boolean", T_BOOLEAN},
    {"true", T_TRUE},
    {"false", T_FALSE},
    {"odd", T_ODD},
    {"even", T_EVEN},
    {"divisibleby", T_DIVISIBLEBY},
    {"eq", T_EQ},
    {"equalto", T_EQ},
    {"==", T_EQ},
    {"ne", T_NE},
    {"!=", T_NE},
    {"lt", T_LT},
    {"lessthan", T_LT},
    {"<", T_LT},
    {"le", T_LE},
    {"<=", T_LE},
    {"gt", T_GT},
    {"greaterthan", T_GT},
    {">", T_GT},
    {"ge", T_GE},
    {">=", T_GE},
    {"in", T_IN},
    {"callable", T_CALLABLE},
    {"lower", T_LOWER},
    {"upper", T_UPPER},
    {"sameas", T_SAMEAS},
    {"escaped", T_ESCAPED},
    {NULL, 0},
};

int tm_filter_id(const char *name, size_t n)
{
    for (int i = 0; tb_filters[i].name; i++)
        if (strlen(tb_filters[i].name) == n && memcmp(tb_filters[i].name, name, n) == 0)
            return tb_filters[i].id;
    return -1;
}

int tm_test_id(const char *name, size_t n)
{
    for (int i = 0; tb_tests[i].name; i++)
        if (strlen(tb_tests[i].name) == n && memcmp(tb_tests[i].name, name, n) == 0)
            return tb_tests[i].id;
    return -1;
}

static const char *const tb_globals[FN_COUNT] = {"range", "namespace", "raise_exception", "strftime_now", "dict"};

int tb_global_id(const char *name)
{
    for (int i = 0; i < FN_COUNT; i++)
        if (!strcmp(tb_globals[i], name))
            return i;
    return -1;
}

/* ---------------------------------------------------------------- argument helpers */

/* Argument `name` at position `i` (or by keyword); NULL when absent. */
const tv *tb_arg(const targs *a, size_t i, const char *name)
{
    if (i < a->npos)
        return &a->pos[i];
    for (size_t k = 0; k < a->nkw; k++)
        if (name && !strcmp(a->kwn[k], name))
            return &a->kwv[k];
    return NULL;
}

ss_status tb_arg_check(tr *r, const tn *at, const targs *a, const char *what, size_t maxpos, const char *const *kwnames)
{
    if (a->npos > maxpos)
        return tr_fail(r, SS_ERR_INVALID_ARG, at, "%s takes at most %zu positional argument(s), got %zu", what, maxpos,
                       a->npos);
    for (size_t k = 0; k < a->nkw; k++) {
        int ok = 0;
        for (size_t j = 0; kwnames && kwnames[j]; j++)
            ok |= !strcmp(kwnames[j], a->kwn[k]);
        if (!ok)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "%s got an unexpected keyword argument '%s'", what, a->kwn[k]);
    }
    return SS_OK;
}

int tb_arg_bool(const tv *v, int dflt)
{
    return v ? tv_truthy(*v) : dflt;
}

ss_status tb_arg_str(tr *r, const tn *at, const tv *v, const char *what, const char **p, size_t *n)
{
    *p = "";
    *n = 0;
    if (!v || v->kind != TV_STR)
        return tr_fail(r, SS_ERR_INVALID_ARG, at, "%s must be a string, not %s", what,
                       v ? tv_type_name(*v) : "missing");
    *p = v->u.s.p;
    *n = v->u.s.n;
    return SS_OK;
}

ss_status tb_arg_int(tr *r, const tn *at, const tv *v, const char *what, int64_t *out)
{
    *out = 0;
    if (!v || (v->kind != TV_INT && v->kind != TV_BOOL))
        return tr_fail(r, SS_ERR_INVALID_ARG, at, "%s must be an integer, not %s", what,
                       v ? tv_type_name(*v) : "missing");
    *out = v->u.i;
    return SS_OK;
}

/* ---------------------------------------------------------------- iteration */
ss_status tb_to_list(tr *r, const tn *at, tv v, tv *out)
{
    switch (v.kind) {
    case TV_LIST:
        *out = v;
        tv_incref(v);
        return SS_OK;
    case TV_UNDEF:
        return tv_list_new(r, 0, 0, out);
    case TV_DICT: {
        const tv_dict_obj *d = TV_DICT_OF(v);
        SS_CHECK(tv_list_new(r, d->n, 0, out));
        for (size_t i = 0; i < d->n; i++) {
            tv_incref(d->k[i]);
            SS_CHECK(tv_list_push(r, *out, d->k[i]));
        }
        return SS_OK;
    }
    case TV_STR: {
        SS_CHECK(tv_list_new(r, 0, 0, out));
        uint32_t cp;
        for (size_t i = 0; i < v.u.s.n;) {
            size_t k = tm_utf8_decode(v.u.s.p + i, v.u.s.n - i, &cp);
            tv c = tv_sborrow(v.u.s.p + i, k);
            c.o = v.o;
            tv_incref(c);
            SS_CHECK(tv_list_push(r, *out, c));
            i += k;
        }
        return SS_OK;
    }
    case TV_LOOP:
        return tb_to_list(r, at, ((tv_loop_obj *)v.o)->items, out);
    default:
        return tr_fail(r, SS_ERR_INVALID_ARG, at, "'%s' object is not iterable", tv_type_name(v));
    }
}

/* Dotted attribute path ("a.b") or integer index of an item, as Jinja's make_attrgetter. */
static ss_status tb_attr_path(tr *r, const tn *at, tv item, tv attr, tv *out)
{
    if (attr.kind == TV_INT)
        return tr_getitem(r, at, item, attr, out);
    if (attr.kind != TV_STR)
        return tr_fail(r, SS_ERR_INVALID_ARG, at, "attribute must be a string");
    tv cur = item;
    tv_incref(cur);
    const char *p = attr.u.s.p, *end = p + attr.u.s.n;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t len = dot ? (size_t)(dot - p) : (size_t)(end - p);
        char key[128];
        ss_status st0 = tr_work(r, 1, 0); /* a part is a step: 'a.' * 4000000 is walked for every item */
        if (st0 != SS_OK) {
            tv_decref(cur);
            return st0;
        }
        if (len >= sizeof(key)) {
            tv_decref(cur);
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "attribute name too long");
        }
        memcpy(key, p, len);
        key[len] = '\0';
        tv next;
        ss_status st;
        char *endp;
        long long idx = strtoll(key, &endp, 10);
        if (len && *endp == '\0' && cur.kind == TV_LIST)
            st = tr_getitem(r, at, cur, tv_int(idx), &next);
        else
            st = tr_getattr(r, cur, key, len, &next);
        tv_decref(cur);
        SS_CHECK(st);
        cur = next;
        if (!dot)
            break;
        p = dot + 1;
    }
    *out = cur;
    return SS_OK;
}

/* ---------------------------------------------------------------- sorting */
typedef struct tb_sortctx {
    tr *r;
    const tn *at;
    tv *keys;
    int reverse;
    ss_status st;
} tb_sortctx;

static int tb_key_less(tb_sortctx *c, size_t a, size_t b)
{
    int res = 0;
    if (c->st != SS_OK)
        return 0;
    c->st = tv_cmp(c->r, c->keys[a], c->keys[b], &res);
    return c->reverse ? res > 0 : res < 0;
}

static void tb_msort(tb_sortctx *c, size_t *idx, size_t *tmp, size_t n)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    tb_msort(c, idx, tmp, h);
    tb_msort(c, idx + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = tb_key_less(c, idx[j], idx[i]) ? idx[j++] : idx[i++];
    while (i < h)
        tmp[k++] = idx[i++];
    while (j < n)
        tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof(size_t));
}

/* Sort key: the item (or its attribute), lowercased when it is a string and !case_sensitive. */
static ss_status tb_sort_key(tr *r, const tn *at, tv item, const tv *attr, int case_sensitive, tv *out)
{
    tv k;
    if (attr && attr->kind != TV_NONE)
        SS_CHECK(tb_attr_path(r, at, item, *attr, &k));
    else {
        k = item;
        tv_incref(k);
    }
    if (!case_sensitive && k.kind == TV_STR) {
        tv low;
        ss_status st = tb_case(r, k, CASE_LOWER, &low);
        tv_decref(k);
        SS_CHECK(st);
        k = low;
    }
    *out = k;
    return SS_OK;
}

/* Sorted permutation of list items; *order is ss_malloc'd (caller frees). */
static ss_status tb_sorted(tr *r, const tn *at, tv list, const tv *attr, int case_sensitive, int reverse,
                           size_t **order)
{
    const tv_list_obj *l = TV_LIST_OF(list);
    size_t n = l->n;
    tv *keys = ss_calloc(n ? n : 1, sizeof(tv));
    size_t *idx = ss_malloc((n ? n : 1) * sizeof(size_t));
    size_t *tmp = ss_malloc((n ? n : 1) * sizeof(size_t));
    ss_status st = (keys && idx && tmp) ? SS_OK : tr_fail(r, SS_ERR_NOMEM, at, "out of memory");
    size_t made = 0;
    for (; made < n && st == SS_OK; made++) {
        idx[made] = made;
        st = tb_sort_key(r, at, l->v[made], attr, case_sensitive, &keys[made]);
        if (st != SS_OK)
            break;
    }
    if (st == SS_OK) {
        tb_sortctx c = {r, at, keys, reverse, SS_OK};
        tb_msort(&c, idx, tmp, n);
        st = c.st;
    }
    for (size_t i = 0; i < made && keys; i++)
        tv_decref(keys[i]);
    ss_free(keys);
    ss_free(tmp);
    if (st != SS_OK) {
        ss_free(idx);
        return st;
    }
    *order = idx;
    return SS_OK;
}

/* ---------------------------------------------------------------- filters */
ss_status tb_dict_items(tr *r, const tn *at, tv in, tv *out)
{
    return tb_filter(r, at, F_ITEMS, in, NULL, 0, NULL, NULL, 0, out);
}

static ss_status tb_round(tr *r, const tn *at, tv v, const targs *a, tv *out)
{
    int64_t prec = 0;
    const tv *pv = tb_arg(a, 0, "precision"), *mv = tb_arg(a, 1, "method");
    if (pv)
        SS_CHECK(tb_arg_int(r, at, pv, "precision", &prec));
    const char *method = "common";
    size_t mn = 6;
    if (mv)
        SS_CHECK(tb_arg_str(r, at, mv, "method", &method, &mn));
    if (v.kind != TV_INT && v.kind != TV_BOOL && v.kind != TV_FLOAT)
        return tr_fail(r, SS_ERR_INVALID_ARG, at, "round needs a number, not %s", tv_type_name(v));
    double x = v.kind == TV_FLOAT ? v.u.f : (double)v.u.i;
    if (mn == 6 && !memcmp(method, "common", 6)) {
        if (v.kind != TV_FLOAT) { /* Python round(int, n) stays an int */
            *out = tv_int(v.u.i);
            return SS_OK;
        }
        if (prec < 0 || prec > 300)
            return tr_fail(r, SS_ERR_UNSUPPORTED, at, "round precision %lld not supported", (long long)prec);
        char buf[400];
        snprintf(buf, sizeof(buf), "%.*f", (int)prec, x); /* correctly rounded, ties to even like Python */
        *out = tv_float(strtod(buf, NULL));
        return SS_OK;
    }
    double scale = pow(10.0, (double)prec);
    if (mn == 5 && !memcmp(method, "floor", 5))
        *out = tv_float(floor(x * scale) / scale);
    else if (mn == 4 && !memcmp(method, "ceil", 4))
        *out = tv_float(ceil(x * scale) / scale);
    else
        return tr_fail(r, SS_ERR_INVALID_ARG, at, "method must be common, ceil or floor");
    return SS_OK;
}

static ss_status tb_int(tr *r, const tn *at, tv v, const targs *a, tv *out)
{
    const tv *dv = tb_arg(a, 0, "default"), *bv = tb_arg(a, 1, "base");
    int64_t base = 10;
    if (bv)
        SS_CHECK(tb_arg_int(r, at, bv, "base", &base));
    tv dflt = dv ? *dv : tv_int(0);
    switch (v.kind) {
    case TV_INT:
    case TV_BOOL:
        *out = tv_int(v.u.i);
        return SS_OK;
    case TV_FLOAT:
        if (!isfinite(v.u.f) || fabs(v.u.f) >= 9.2e18)
            break;
        *out = tv_int((int64_t)v.u.f);
        return SS_OK;
    case TV_STR: {
        char buf[128];
        if (v.u.s.n >= sizeof(buf) || base < 0 || base == 1 || base > 36)
            break;
        memcpy(buf, v.u.s.p, v.u.s.n);
        buf[v.u.s.n] = '\0';
        tv t;
        SS_CHECK(tb_strip(r, tv_sborrow(buf, v.u.s.n), NULL, 0, 1, 1, &t));
        char tmp[128];
        memcpy(tmp, t.u.s.p, t.u.s.n);
        tmp[t.u.s.n] = '\0';
        char *end;
        long long x = strtoll(tmp, &end, (int)base);
        if (t.u.s.n && *end == '\0') {
            *out = tv_int(x);
            return SS_OK;
        }
        double f = strtod(tmp, &end);
        if (t.u.s.n && *end == '\0' && isfinite(f) && fabs(f) < 9.2e18) {
            *out = tv_int((int64_t)f);
            return SS_OK;
        }
        break;
    }
    default:
        break;
    }
    *out = dflt;
    tv_incref(*out);
    return SS_OK;
}

static ss_status tb_float(tr *r, const tn *at, tv v, const targs *a, tv *out)
{
    (void)at;
    const tv *dv = tb_arg(a, 0, "default");
    switch (v.kind) {
    case TV_INT:
    case TV_BOOL:
        *out = tv_float((double)v.u.i);
        return SS_OK;
    case TV_FLOAT:
        *out = v;
        return SS_OK;
    case TV_STR: {
        char tmp[128];
        if (v.u.s.n < sizeof(tmp)) {
            tv t;
            SS_CHECK(tb_strip(r, v, NULL, 0, 1, 1, &t));
            memcpy(tmp, t.u.s.p, t.u.s.n);
            tmp[t.u.s.n] = '\0';
            tv_decref(t);
            char *end;
            double f = strtod(tmp, &end);
            if (tmp[0] && *end == '\0') {
                *out = tv_float(f);
                return SS_OK;
            }
        }
        break;
    }
    default:
        break;
    }
    *out = dv ? *dv : tv_float(0.0);
    tv_incref(*out);
    return SS_OK;
}

static ss_status tb_select(tr *r, const tn *at, int id, tv seq, const targs *a, tv *out)
{
    int by_attr = id == F_SELECTATTR || id == F_REJECTATTR;
    int want = id == F_SELECT || id == F_SELECTATTR;
    size_t first = 0;
    tv attr = tv_none();
    if (by_attr) {
        if (a->npos < 1)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "%s needs an attribute name", want ? "selectattr" : "rejectattr");
        attr = a->pos[0];
        first = 1;
    }
    int test = -1;
    if (a->npos > first) {
        const char *tn_;
        size_t tl;
        SS_CHECK(tb_arg_str(r, at, &a->pos[first], "test name", &tn_, &tl));
        test = tm_test_id(tn_, tl);
        if (test < 0)
            return tr_fail(r, SS_ERR_UNSUPPORTED, at, "no test named '%.*s'", (int)(tl > 40 ? 40 : tl), tn_);
    }
    tv list;
    SS_CHECK(tb_to_list(r, at, seq, &list));
    const tv_list_obj *l = TV_LIST_OF(list);
    ss_status st = tr_work(r, l->n, 0); /* items left out cost no memory */
    if (st == SS_OK)
        st = tv_list_new(r, 0, 0, out);
    for (size_t i = 0; i < l->n && st == SS_OK; i++) {
        tv val = l->v[i];
        tv_incref(val);
        if (by_attr) {
            tv got;
            st = tb_attr_path(r, at, l->v[i], attr, &got);
            tv_decref(val);
            if (st != SS_OK)
                break;
            val = got;
        }
        int res;
        if (test < 0)
            res = tv_truthy(val);
        else
            st = tb_test(r, at, test, val, a->pos + first + 1, a->npos - first - 1, &res);
        tv_decref(val);
        if (st == SS_OK && res == want) {
            tv_incref(l->v[i]);
            st = tv_list_push(r, *out, l->v[i]);
        }
    }
    tv_decref(list);
    return st;
}

static ss_status tb_map(tr *r, const tn *at, tv seq, const targs *a, tv *out)
{
    const tv *attr = NULL, *dflt = NULL;
    for (size_t k = 0; k < a->nkw; k++) {
        if (!strcmp(a->kwn[k], "attribute"))
            attr = &a->kwv[k];
        else if (!strcmp(a->kwn[k], "default"))
            dflt = &a->kwv[k];
        else
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "map got an unexpected keyword argument '%s'", a->kwn[k]);
    }
    int filter = -1;
    if (!attr) {
        const char *fn;
        size_t fl;
        if (a->npos < 1)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "map needs a filter name or attribute=");
        SS_CHECK(tb_arg_str(r, at, &a->pos[0], "filter name", &fn, &fl));
        filter = tm_filter_id(fn, fl);
        if (filter < 0)
            return tr_fail(r, SS_ERR_UNSUPPORTED, at, "no filter named '%.*s'", (int)(fl > 40 ? 40 : fl), fn);
    }
    tv list;
    SS_CHECK(tb_to_list(r, at, seq, &list));
    const tv_list_obj *l = TV_LIST_OF(list);
    ss_status st = tv_list_new(r, 0, 0, out);
    for (size_t i = 0; i < l->n && st == SS_OK; i++) {
        tv v;
        if (attr) {
            st = tb_attr_path(r, at, l->v[i], *attr, &v);
            if (st == SS_OK && v.kind == TV_UNDEF && dflt) {
                v = *dflt;
                tv_incref(v);
            }
        } else {
            st = tb_filter(r, at, filter, l->v[i], a->pos + 1, a->npos - 1, NULL, NULL, 0, &v);
        }
        if (st == SS_OK)
            st = tv_list_push(r, *out, v);
    }
    tv_decref(list);
    return st;
}

static ss_status tb_tojson(tr *r, const tn *at, tv v, const targs *a, tv *out)
{
    static const char *const kws[] = {"ensure_ascii", "indent", "separators", "sort_keys", NULL};
    SS_CHECK(tb_arg_check(r, at, a, "tojson", 4, kws));
    const tv *ea = tb_arg(a, 0, "ensure_ascii"), *ind = tb_arg(a, 1, "indent"), *sep = tb_arg(a, 2, "separators"),
             *sk = tb_arg(a, 3, "sort_keys");
    char spaces[256];
    const char *indent = NULL;
    size_t indent_n = 0;
    if (ind && ind->kind != TV_NONE) {
        if (ind->kind == TV_STR) {
            indent = ind->u.s.p;
            indent_n = ind->u.s.n;
        } else if (ind->kind == TV_INT) {
            int64_t w = ind->u.i < 0 ? 0 : ind->u.i;
            if (w > (int64_t)sizeof(spaces))
                return tr_fail(r, SS_ERR_UNSUPPORTED, at, "tojson indent above %zu", sizeof(spaces));
            memset(spaces, ' ', (size_t)w);
            indent = spaces;
            indent_n = (size_t)w;
        } else {
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "tojson indent must be an int or a string");
        }
    }
    char item_sep[64], key_sep[64];
    const char *isep = NULL, *ksep = NULL;
    if (sep && sep->kind != TV_NONE) {
        if (sep->kind != TV_LIST || TV_LIST_OF(*sep)->n != 2 || TV_LIST_OF(*sep)->v[0].kind != TV_STR ||
            TV_LIST_OF(*sep)->v[1].kind != TV_STR || TV_LIST_OF(*sep)->v[0].u.s.n >= sizeof(item_sep) ||
            TV_LIST_OF(*sep)->v[1].u.s.n >= sizeof(key_sep))
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "tojson separators must be a pair of short strings");
        tv s0 = TV_LIST_OF(*sep)->v[0], s1 = TV_LIST_OF(*sep)->v[1];
        memcpy(item_sep, s0.u.s.p, s0.u.s.n);
        item_sep[s0.u.s.n] = '\0';
        memcpy(key_sep, s1.u.s.p, s1.u.s.n);
        key_sep[s1.u.s.n] = '\0';
        isep = item_sep;
        ksep = key_sep;
    }
    tbuf b = {0};
    ss_status st = tv_write_json(r, &b, v, tb_arg_bool(ea, 0), indent, indent_n, isep, ksep, tb_arg_bool(sk, 0));
    if (st != SS_OK) {
        tbuf_free(&b);
        return st;
    }
    return tv_str_take(r, &b, out);
}

static ss_status tb_minmax(tr *r, const tn *at, tv seq, const targs *a, int want_max, tv *out)
{
    tv list;
    SS_CHECK(tb_to_list(r, at, seq, &list));
    if (TV_LIST_OF(list)->n == 0) {
        tv_decref(list);
        *out = tv_undef(NULL);
        return SS_OK;
    }
    size_t *order;
    ss_status st =
        tb_sorted(r, at, list, tb_arg(a, 1, "attribute"), tb_arg_bool(tb_arg(a, 0, "case_sensitive"), 0), 0, &order);
    if (st == SS_OK) {
        const tv_list_obj *l = TV_LIST_OF(list);
        /* Python min/max return the first of equal extremes: walk the stable order accordingly. */
        size_t pick = want_max ? order[l->n - 1] : order[0];
        if (want_max) {
            size_t j = l->n - 1;
            while (j > 0) {
                int c = 0;
                tv k1, k2;
                const tv *attr = tb_arg(a, 1, "attribute");
                int cs = tb_arg_bool(tb_arg(a, 0, "case_sensitive"), 0);
                if (tb_sort_key(r, at, l->v[order[j - 1]], attr, cs, &k1) != SS_OK)
                    break;
                if (tb_sort_key(r, at, l->v[order[j]], attr, cs, &k2) != SS_OK) {
                    tv_decref(k1);
                    break;
                }
                st = tv_equal(r, k1, k2, &c);
                tv_decref(k1);
                tv_decref(k2);
                if (st != SS_OK || !c)
                    break;
                j--;
            }
            pick = order[j];
        }
        if (st == SS_OK) {
            *out = l->v[pick];
            tv_incref(*out);
        }
        ss_free(order);
    }
    tv_decref(list);
    return st;
}

ss_status tb_filter(tr *r, const tn *at, int id, tv in, const tv *pos, size_t npos, const char *const *kwn,
                    const tv *kwv, size_t nkw, tv *out)
{
    targs a = {pos, npos, kwn, kwv, nkw};
    tv s;
    ss_status st = SS_OK;
    switch (id) {
    case F_SAFE:
    case F_STRING:
        return tv_to_str(r, in, out);
    case F_TRIM: {
        const tv *cv = tb_arg(&a, 0, "chars");
        const char *chars = NULL;
        size_t cn = 0;
        if (cv && cv->kind != TV_NONE)
            SS_CHECK(tb_arg_str(r, at, cv, "chars", &chars, &cn));
        SS_CHECK(tv_to_str(r, in, &s));
        st = tb_strip(r, s, chars, cn, 1, 1, out);
        tv_decref(s);
        return st;
    }
    case F_UPPER:
    case F_LOWER:
    case F_TITLE:
    case F_CAPITALIZE:
        SS_CHECK(tv_to_str(r, in, &s));
        st = tb_case(r, s,
                     id == F_UPPER   ? CASE_UPPER
                     : id == F_LOWER ? CASE_LOWER
                     : id == F_TITLE ? CASE_JTITLE
                                     : CASE_CAPITALIZE,
                     out);
        tv_decref(s);
        return st;
    case F_ESCAPE:
        SS_CHECK(tv_to_str(r, in, &s));
        st = tb_html_escape(r, s, out);
        tv_decref(s);
        return st;
    case F_LENGTH:
        switch (in.kind) {
        case TV_STR:
            SS_CHECK(tr_work(r, 0, in.u.s.n)); /* code points are counted */
            *out = tv_int((int64_t)tm_utf8_len(in.u.s.p, in.u.s.n));
            return SS_OK;
        case TV_LIST:
            *out = tv_int((int64_t)TV_LIST_OF(in)->n);
            return SS_OK;
        case TV_DICT:
            *out = tv_int((int64_t)TV_DICT_OF(in)->n);
            return SS_OK;
        case TV_UNDEF:
            *out = tv_int(0);
            return SS_OK;
        case TV_LOOP:
            *out = tv_int(((tv_loop_obj *)in.o)->length);
            return SS_OK;
        default:
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "object of type '%s' has no len()", tv_type_name(in));
        }
    case F_DEFAULT: {
        const tv *dv = tb_arg(&a, 0, "default_value");
        int boolean = tb_arg_bool(tb_arg(&a, 1, "boolean"), 0);
        if (in.kind == TV_UNDEF || (boolean && !tv_truthy(in))) {
            *out = dv ? *dv : tv_sborrow("", 0);
            tv_incref(*out);
        } else {
            *out = in;
            tv_incref(in);
        }
        return SS_OK;
    }
    case F_FIRST:
    case F_LAST: {
        tv list;
        SS_CHECK(tb_to_list(r, at, in, &list));
        const tv_list_obj *l = TV_LIST_OF(list);
        if (l->n == 0) {
            *out = tv_undef(NULL);
        } else {
            *out = l->v[id == F_FIRST ? 0 : l->n - 1];
            tv_incref(*out);
        }
        tv_decref(list);
        return SS_OK;
    }
    case F_JOIN: {
        const tv *dv = tb_arg(&a, 0, "d"), *av = tb_arg(&a, 1, "attribute");
        const char *sep = "";
        size_t sn = 0;
        char attr[128];
        if (dv)
            SS_CHECK(tb_arg_str(r, at, dv, "join separator", &sep, &sn));
        if (av) {
            const char *ap;
            size_t an;
            SS_CHECK(tb_arg_str(r, at, av, "attribute", &ap, &an));
            if (an >= sizeof(attr))
                return tr_fail(r, SS_ERR_INVALID_ARG, at, "attribute name too long");
            memcpy(attr, ap, an);
            attr[an] = '\0';
        }
        return tb_join(r, at, in, sep, sn, av ? attr : NULL, out);
    }
    case F_REPLACE: {
        const char *o, *n;
        size_t on, nn;
        int64_t count = -1;
        SS_CHECK(tb_arg_str(r, at, tb_arg(&a, 0, "old"), "replace old", &o, &on));
        SS_CHECK(tb_arg_str(r, at, tb_arg(&a, 1, "new"), "replace new", &n, &nn));
        const tv *cv = tb_arg(&a, 2, "count");
        if (cv && cv->kind != TV_NONE)
            SS_CHECK(tb_arg_int(r, at, cv, "count", &count));
        SS_CHECK(tv_to_str(r, in, &s));
        st = tb_replace(r, s, o, on, n, nn, count == 0 ? -1 : count, out);
        tv_decref(s);
        return st;
    }
    case F_INT:
        return tb_int(r, at, in, &a, out);
    case F_FLOAT:
        return tb_float(r, at, in, &a, out);
    case F_LIST:
        if (in.kind == TV_LIST && !TV_LIST_OF(in)->tuple) {
            *out = in;
            tv_incref(in);
            return SS_OK;
        } else {
            tv list;
            SS_CHECK(tb_to_list(r, at, in, &list));
            if (!TV_LIST_OF(list)->tuple) {
                *out = list;
                return SS_OK;
            }
            st = tv_list_new(r, TV_LIST_OF(list)->n, 0, out);
            for (size_t i = 0; i < TV_LIST_OF(list)->n && st == SS_OK; i++) {
                tv_incref(TV_LIST_OF(list)->v[i]);
                st = tv_list_push(r, *out, TV_LIST_OF(list)->v[i]);
            }
            tv_decref(list);
            return st;
        }
    case F_ITEMS:
        if (in.kind == TV_UNDEF)
            return tv_list_new(r, 0, 0, out);
        if (in.kind != TV_DICT)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "can only get item pairs from a mapping");
        SS_CHECK(tv_list_new(r, TV_DICT_OF(in)->n, 0, out));
        for (size_t i = 0; i < TV_DICT_OF(in)->n; i++) {
            tv pair;
            SS_CHECK(tv_list_new(r, 2, 1, &pair));
            tv_incref(TV_DICT_OF(in)->k[i]);
            tv_incref(TV_DICT_OF(in)->v[i]);
            SS_CHECK(tv_list_push(r, pair, TV_DICT_OF(in)->k[i]));
            SS_CHECK(tv_list_push(r, pair, TV_DICT_OF(in)->v[i]));
            SS_CHECK(tv_list_push(r, *out, pair));
        }
        return SS_OK;
    case F_DICTSORT: {
        if (in.kind != TV_DICT)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "dictsort needs a mapping");
        const tv *byv = tb_arg(&a, 1, "by");
        int by_value = byv && byv->kind == TV_STR && byv->u.s.n == 5 && !memcmp(byv->u.s.p, "value", 5);
        tv pairs;
        SS_CHECK(tb_filter(r, at, F_ITEMS, in, NULL, 0, NULL, NULL, 0, &pairs));
        tv idx = tv_int(by_value ? 1 : 0);
        size_t *order;
        st = tb_sorted(r, at, pairs, &idx, tb_arg_bool(tb_arg(&a, 0, "case_sensitive"), 0),
                       tb_arg_bool(tb_arg(&a, 2, "reverse"), 0), &order);
        if (st == SS_OK) {
            st = tv_list_new(r, TV_LIST_OF(pairs)->n, 0, out);
            for (size_t i = 0; i < TV_LIST_OF(pairs)->n && st == SS_OK; i++) {
                tv_incref(TV_LIST_OF(pairs)->v[order[i]]);
                st = tv_list_push(r, *out, TV_LIST_OF(pairs)->v[order[i]]);
            }
            ss_free(order);
        }
        tv_decref(pairs);
        return st;
    }
    case F_SELECT:
    case F_REJECT:
    case F_SELECTATTR:
    case F_REJECTATTR:
        return tb_select(r, at, id, in, &a, out);
    case F_MAP:
        return tb_map(r, at, in, &a, out);
    case F_INDENT: {
        const tv *wv = tb_arg(&a, 0, "width");
        char spaces[256];
        const char *pre = "    ";
        size_t pn = 4;
        if (wv && wv->kind == TV_STR) {
            pre = wv->u.s.p;
            pn = wv->u.s.n;
        } else if (wv) {
            int64_t w;
            SS_CHECK(tb_arg_int(r, at, wv, "indent width", &w));
            if (w < 0)
                w = 0;
            if (w > (int64_t)sizeof(spaces))
                return tr_fail(r, SS_ERR_UNSUPPORTED, at, "indent width above %zu", sizeof(spaces));
            memset(spaces, ' ', (size_t)w);
            pre = spaces;
            pn = (size_t)w;
        }
        SS_CHECK(tv_to_str(r, in, &s));
        st = tb_indent(r, s, pre, pn, tb_arg_bool(tb_arg(&a, 1, "first"), 0), tb_arg_bool(tb_arg(&a, 2, "blank"), 0),
                       out);
        tv_decref(s);
        return st;
    }
    case F_ROUND:
        return tb_round(r, at, in, &a, out);
    case F_ABS:
        if (in.kind == TV_INT || in.kind == TV_BOOL) {
            if (in.u.i == INT64_MIN)
                return tr_fail(r, SS_ERR_UNSUPPORTED, at, "integer overflow in abs");
            *out = tv_int(in.u.i < 0 ? -in.u.i : in.u.i);
        } else if (in.kind == TV_FLOAT) {
            *out = tv_float(fabs(in.u.f));
        } else {
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "bad operand type for abs(): '%s'", tv_type_name(in));
        }
        return SS_OK;
    case F_REVERSE:
        if (in.kind == TV_STR) {
            tv chars;
            SS_CHECK(tb_to_list(r, at, in, &chars));
            tbuf b = {0};
            const tv_list_obj *l = TV_LIST_OF(chars);
            for (size_t i = l->n; i > 0 && st == SS_OK; i--)
                st = tbuf_put(r, &b, l->v[i - 1].u.s.p, l->v[i - 1].u.s.n);
            tv_decref(chars);
            if (st != SS_OK) {
                tbuf_free(&b);
                return st;
            }
            return tv_str_take(r, &b, out);
        } else {
            tv list;
            SS_CHECK(tb_to_list(r, at, in, &list));
            const tv_list_obj *l = TV_LIST_OF(list);
            st = tv_list_new(r, l->n, 0, out);
            for (size_t i = l->n; i > 0 && st == SS_OK; i--) {
                tv_incref(l->v[i - 1]);
                st = tv_list_push(r, *out, l->v[i - 1]);
            }
            tv_decref(list);
            return st;
        }
    case F_SORT:
    case F_UNIQUE: {
        static const char *const sort_kws[] = {"reverse", "case_sensitive", "attribute", NULL};
        static const char *const uniq_kws[] = {"case_sensitive", "attribute", NULL};
        SS_CHECK(tb_arg_check(r, at, &a, id == F_SORT ? "sort" : "unique", id == F_SORT ? 3 : 2,
                              id == F_SORT ? sort_kws : uniq_kws));
        tv list;
        SS_CHECK(tb_to_list(r, at, in, &list));
        const tv_list_obj *l = TV_LIST_OF(list);
        if (id == F_SORT) {
            size_t *order;
            st = tb_sorted(r, at, list, tb_arg(&a, 2, "attribute"), tb_arg_bool(tb_arg(&a, 1, "case_sensitive"), 0),
                           tb_arg_bool(tb_arg(&a, 0, "reverse"), 0), &order);
            if (st == SS_OK) {
                st = tv_list_new(r, l->n, 0, out);
                for (size_t i = 0; i < l->n && st == SS_OK; i++) {
                    tv_incref(l->v[order[i]]);
                    st = tv_list_push(r, *out, l->v[order[i]]);
                }
                ss_free(order);
            }
        } else {
            tv seen;
            const tv *attr = tb_arg(&a, 1, "attribute");
            int cs = tb_arg_bool(tb_arg(&a, 0, "case_sensitive"), 0);
            st = tv_list_new(r, 0, 0, &seen);
            if (st == SS_OK)
                st = tv_list_new(r, 0, 0, out);
            for (size_t i = 0; i < l->n && st == SS_OK; i++) {
                tv key;
                st = tb_sort_key(r, at, l->v[i], attr, cs, &key);
                if (st != SS_OK)
                    break;
                int dup = 0; /* each comparison is a step (tv_equal): n distinct items cost n**2 / 2 */
                for (size_t k = 0; k < TV_LIST_OF(seen)->n && !dup && st == SS_OK; k++)
                    st = tv_equal(r, TV_LIST_OF(seen)->v[k], key, &dup);
                if (dup || st != SS_OK) {
                    tv_decref(key);
                    continue;
                }
                st = tv_list_push(r, seen, key);
                if (st == SS_OK) {
                    tv_incref(l->v[i]);
                    st = tv_list_push(r, *out, l->v[i]);
                }
            }
            if (seen.o)
                tv_decref(seen);
        }
        tv_decref(list);
        return st;
    }
    case F_MIN:
    case F_MAX:
        return tb_minmax(r, at, in, &a, id == F_MAX, out);
    case F_SUM: {
        tv list;
        SS_CHECK(tb_to_list(r, at, in, &list));
        const tv *attr = tb_arg(&a, 0, "attribute");
        const tv *startv = tb_arg(&a, 1, "start");
        tv acc = startv ? *startv : tv_int(0);
        tv_incref(acc);
        const tv_list_obj *l = TV_LIST_OF(list);
        st = tr_work(r, l->n, 0);
        for (size_t i = 0; i < l->n && st == SS_OK; i++) {
            tv item, next;
            if (attr && attr->kind != TV_NONE)
                st = tb_attr_path(r, at, l->v[i], *attr, &item);
            else {
                item = l->v[i];
                tv_incref(item);
            }
            if (st != SS_OK)
                break;
            if ((acc.kind == TV_INT || acc.kind == TV_FLOAT || acc.kind == TV_BOOL) &&
                (item.kind == TV_INT || item.kind == TV_FLOAT || item.kind == TV_BOOL)) {
                if (acc.kind != TV_FLOAT && item.kind != TV_FLOAT) {
                    int64_t z;
                    if (__builtin_add_overflow(acc.u.i, item.u.i, &z))
                        st = tr_fail(r, SS_ERR_UNSUPPORTED, at, "integer overflow in sum");
                    next = tv_int(z);
                } else {
                    next = tv_float((acc.kind == TV_FLOAT ? acc.u.f : (double)acc.u.i) +
                                    (item.kind == TV_FLOAT ? item.u.f : (double)item.u.i));
                }
            } else {
                st = tr_fail(r, SS_ERR_INVALID_ARG, at, "unsupported operand type(s) for sum: '%s' and '%s'",
                             tv_type_name(acc), tv_type_name(item));
            }
            tv_decref(item);
            if (st == SS_OK) {
                tv_decref(acc);
                acc = next;
            }
        }
        tv_decref(list);
        if (st != SS_OK) {
            tv_decref(acc);
            return st;
        }
        *out = acc;
        return SS_OK;
    }
    case F_TOJSON:
        return tb_tojson(r, at, in, &a, out);
    default:
        return tr_fail(r, SS_ERR_INTERNAL, at, "filter %d has no implementation", id);
    }
}

/* ---------------------------------------------------------------- tests */
ss_status tb_test(tr *r, const tn *at, int id, tv in, const tv *args, size_t nargs, int *res)
{
    const tv *arg = nargs ? &args[0] : NULL;
    int c;
    switch (id) {
    case T_DEFINED:
        *res = in.kind != TV_UNDEF;
        return SS_OK;
    case T_UNDEFINED:
        *res = in.kind == TV_UNDEF;
        return SS_OK;
    case T_NONE:
        *res = in.kind == TV_NONE;
        return SS_OK;
    case T_STRING:
        *res = in.kind == TV_STR;
        return SS_OK;
    case T_MAPPING:
        *res = in.kind == TV_DICT;
        return SS_OK;
    case T_ITERABLE:
        *res =
            in.kind == TV_STR || in.kind == TV_LIST || in.kind == TV_DICT || in.kind == TV_UNDEF || in.kind == TV_LOOP;
        return SS_OK;
    case T_SEQUENCE:
        *res = in.kind == TV_STR || in.kind == TV_LIST || in.kind == TV_DICT || in.kind == TV_UNDEF;
        return SS_OK;
    case T_NUMBER:
        *res = in.kind == TV_INT || in.kind == TV_FLOAT || in.kind == TV_BOOL;
        return SS_OK;
    case T_INTEGER:
        *res = in.kind == TV_INT;
        return SS_OK;
    case T_FLOAT:
        *res = in.kind == TV_FLOAT;
        return SS_OK;
    case T_BOOLEAN:
        *res = in.kind == TV_BOOL;
        return SS_OK;
    case T_TRUE:
        *res = in.kind == TV_BOOL && in.u.i;
        return SS_OK;
    case T_FALSE:
        *res = in.kind == TV_BOOL && !in.u.i;
        return SS_OK;
    case T_CALLABLE:
        *res = in.kind == TV_MACRO || in.kind == TV_FUNC;
        return SS_OK;
    case T_ESCAPED:
        *res = 0;
        return SS_OK;
    case T_ODD:
    case T_EVEN:
        if (in.kind != TV_INT && in.kind != TV_BOOL)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "test '%s' needs an integer, not %s",
                           id == T_ODD ? "odd" : "even", tv_type_name(in));
        *res = ((in.u.i % 2) != 0) == (id == T_ODD);
        return SS_OK;
    case T_DIVISIBLEBY: {
        int64_t d;
        SS_CHECK(tb_arg_int(r, at, arg, "divisibleby argument", &d));
        if (in.kind != TV_INT && in.kind != TV_BOOL)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "test 'divisibleby' needs an integer, not %s", tv_type_name(in));
        if (d == 0)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "integer division or modulo by zero");
        *res = d == -1 || in.u.i % d == 0;
        return SS_OK;
    }
    case T_LOWER:
    case T_UPPER: {
        tv s;
        SS_CHECK(tv_to_str(r, in, &s));
        ss_status st = tr_work(r, 0, s.u.s.n);
        *res = st == SS_OK && tb_str_all_case(s, id == T_UPPER);
        tv_decref(s);
        return st;
    }
    default:
        break;
    }
    if (!arg)
        return tr_fail(r, SS_ERR_INVALID_ARG, at, "this test needs an argument");
    switch (id) {
    case T_EQ:
        return tv_equal(r, in, *arg, res);
    case T_NE:
        SS_CHECK(tv_equal(r, in, *arg, res));
        *res = !*res;
        return SS_OK;
    case T_SAMEAS:
        if (in.kind == arg->kind && !in.o)
            return tv_equal(r, in, *arg, res); /* by value, counting the bytes compared */
        *res = in.kind == arg->kind && in.o == arg->o;
        return SS_OK;
    case T_IN:
        if (arg->kind == TV_STR) {
            if (in.kind != TV_STR)
                return tr_fail(r, SS_ERR_INVALID_ARG, at, "'in <string>' requires string as left operand");
            SS_CHECK(tr_work(r, 0, arg->u.s.n));
            *res = in.u.s.n == 0 || memmem(arg->u.s.p, arg->u.s.n, in.u.s.p, in.u.s.n) != NULL;
        } else if (arg->kind == TV_LIST) {
            *res = 0;
            for (size_t i = 0; i < TV_LIST_OF(*arg)->n && !*res; i++)
                SS_CHECK(tv_equal(r, TV_LIST_OF(*arg)->v[i], in, res));
        } else if (arg->kind == TV_DICT) {
            const tv *hit;
            SS_CHECK(tv_dict_get(r, *arg, in, &hit));
            *res = hit != NULL;
        } else {
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "argument of type '%s' is not iterable", tv_type_name(*arg));
        }
        return SS_OK;
    default:
        r->cur_node = at;
        SS_CHECK(tv_cmp(r, in, *arg, &c));
        *res = id == T_LT ? c < 0 : id == T_LE ? c <= 0 : id == T_GT ? c > 0 : c >= 0;
        return SS_OK;
    }
}

/* ---------------------------------------------------------------- globals */
ss_status tb_global_call(tr *r, const tn *at, int fn, const tv *pos, size_t npos, const char *const *kwn, const tv *kwv,
                         size_t nkw, tv *out)
{
    switch (fn) {
    case FN_RANGE: {
        int64_t start = 0, stop, step = 1;
        if (nkw || npos < 1 || npos > 3)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "range expected 1 to 3 positional arguments");
        if (npos == 1) {
            SS_CHECK(tb_arg_int(r, at, &pos[0], "range() argument", &stop));
        } else {
            SS_CHECK(tb_arg_int(r, at, &pos[0], "range() argument", &start));
            SS_CHECK(tb_arg_int(r, at, &pos[1], "range() argument", &stop));
            if (npos == 3)
                SS_CHECK(tb_arg_int(r, at, &pos[2], "range() argument", &step));
        }
        if (step == 0)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "range() arg 3 must not be zero");
        /* in 64-bit unsigned arithmetic, exact: doubles miscounted near the int64 ends (start + i * step overflowed) */
        uint64_t ustep = step > 0 ? (uint64_t)step : -(uint64_t)step;
        uint64_t span = step > 0 ? (stop > start ? (uint64_t)stop - (uint64_t)start : 0)
                                 : (start > stop ? (uint64_t)start - (uint64_t)stop : 0);
        uint64_t count = span ? (span - 1) / ustep + 1 : 0;
        if (count > (uint64_t)SS_TEMPLATE_MAX_LOOP_ITERS)
            return tr_fail(r, SS_ERR_CAPACITY, at, "range() of %llu items exceeds the limit of %lld",
                           (unsigned long long)count, (long long)SS_TEMPLATE_MAX_LOOP_ITERS);
        SS_CHECK(tv_list_new(r, (size_t)count, 0, out));
        for (uint64_t i = 0; i < count; i++)
            SS_CHECK(tv_list_push(r, *out, tv_int((int64_t)((uint64_t)start + i * (uint64_t)step))));
        return SS_OK;
    }
    case FN_NAMESPACE:
    case FN_DICT: {
        SS_CHECK(tv_dict_new(r, 0, fn == FN_NAMESPACE, out));
        if (npos > 1)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "%s expected at most 1 positional argument", tb_globals[fn]);
        if (npos == 1) {
            if (pos[0].kind != TV_DICT)
                return tr_fail(r, SS_ERR_INVALID_ARG, at, "%s() positional argument must be a mapping", tb_globals[fn]);
            const tv_dict_obj *d = TV_DICT_OF(pos[0]);
            for (size_t i = 0; i < d->n; i++) {
                tv_incref(d->k[i]);
                tv_incref(d->v[i]);
                SS_CHECK(tv_dict_set(r, *out, d->k[i], d->v[i]));
            }
        }
        for (size_t k = 0; k < nkw; k++) {
            tv_incref(kwv[k]);
            SS_CHECK(tv_dict_set(r, *out, tv_sborrow(kwn[k], strlen(kwn[k])), kwv[k]));
        }
        return SS_OK;
    }
    case FN_RAISE: {
        tbuf b = {0};
        ss_status st = npos ? tv_write_str(r, &b, pos[0]) : SS_OK;
        if (st == SS_OK)
            st = tr_fail(r, SS_ERR_INVALID_ARG, at, "raise_exception: %s", b.p ? b.p : "");
        tbuf_free(&b);
        return st;
    }
    case FN_STRFTIME: {
        const char *f;
        size_t fl;
        if (npos != 1)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "strftime_now() takes exactly one argument");
        SS_CHECK(tb_arg_str(r, at, &pos[0], "strftime_now format", &f, &fl));
        char fmt[256], buf[512];
        if (fl >= sizeof(fmt))
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "strftime_now format too long");
        memcpy(fmt, f, fl);
        fmt[fl] = '\0';
        time_t now = time(NULL);
        struct tm tmv;
        localtime_r(&now, &tmv);
        size_t n = strftime(buf, sizeof(buf), fmt, &tmv);
        return tv_str_new(r, buf, n, out);
    }
    default:
        return tr_fail(r, SS_ERR_INTERNAL, at, "unknown global %d", fn);
    }
}
