/* tmpl_strings.c — Python str semantics for templates: case mapping (via utf8proc), strip, split, replace,
 * join, format, find, Jinja's indent/escape, and the str/dict/loop methods templates call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/alloc.h"
#include "template/tmpl_internal.h"

/* ---------------------------------------------------------------- string helpers */
typedef utf8proc_int32_t (*tb_cpmap)(utf8proc_int32_t);

/* Appends s with every code point mapped by f (NULL = copy). */
static ss_status tb_map_cp(tr *r, tbuf *b, const char *p, size_t n, tb_cpmap f)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = tm_utf8_decode(p + i, n - i, &cp);
        if (f && k > 0 && (k > 1 || (unsigned char)p[i] < 0x80)) {
            if (cp == 0xdf && f == utf8proc_toupper) { /* Python: 'ß'.upper() == 'SS' */
                SS_CHECK(tbuf_put(r, b, "SS", 2));
            } else {
                char enc[4];
                size_t m = tm_utf8_encode((uint32_t)f((utf8proc_int32_t)cp), enc);
                SS_CHECK(tbuf_put(r, b, enc, m));
            }
        } else {
            SS_CHECK(tbuf_put(r, b, p + i, k));
        }
        i += k;
    }
    return SS_OK;
}

static int tb_is_cased(uint32_t cp)
{
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
}

static int tb_jtitle_sep(uint32_t cp)
{
    return cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || tm_is_space(cp);
}

ss_status tb_case(tr *r, tv s, int mode, tv *out)
{
    tbuf b = {0};
    ss_status st = SS_OK;
    const char *p = s.u.s.p;
    size_t n = s.u.s.n;
    if (mode == CASE_UPPER || mode == CASE_LOWER) {
        st = tb_map_cp(r, &b, p, n, mode == CASE_UPPER ? utf8proc_toupper : utf8proc_tolower);
    } else {
        int prev_cased = 0, at_start = 1, prev_sep = 1;
        for (size_t i = 0; i < n && st == SS_OK;) {
            uint32_t cp;
            size_t k = tm_utf8_decode(p + i, n - i, &cp);
            tb_cpmap f;
            if (mode == CASE_PYTITLE)
                f = prev_cased ? utf8proc_tolower : utf8proc_totitle;
            else if (mode == CASE_CAPITALIZE)
                f = at_start ? utf8proc_totitle : utf8proc_tolower;
            else
                f = prev_sep ? utf8proc_toupper : utf8proc_tolower;
            st = tb_map_cp(r, &b, p + i, k, f);
            prev_cased = tb_is_cased(cp);
            prev_sep = tb_jtitle_sep(cp);
            at_start = 0;
            i += k;
        }
    }
    if (st != SS_OK) {
        tbuf_free(&b);
        return st;
    }
    return tv_str_take(r, &b, out);
}

static int tb_in_chars(uint32_t cp, const char *chars, size_t nchars)
{
    if (!chars)
        return tm_is_space(cp);
    for (size_t i = 0; i < nchars;) {
        uint32_t c;
        i += tm_utf8_decode(chars + i, nchars - i, &c);
        if (c == cp)
            return 1;
    }
    return 0;
}

/* Python str.strip/lstrip/rstrip: *out is a view of s (shares its owner). */
ss_status tb_strip(tr *r, tv s, const char *chars, size_t nchars, int left, int right, tv *out)
{
    size_t b = 0, e = s.u.s.n;
    const char *p = s.u.s.p;
    while (left && b < e) {
        uint32_t cp;
        size_t k = tm_utf8_decode(p + b, e - b, &cp);
        if (chars)
            SS_CHECK(tr_work(r, 0, nchars)); /* each character is looked for among all of chars */
        if (!tb_in_chars(cp, chars, nchars))
            break;
        b += k;
    }
    while (right && e > b) {
        size_t st = e - 1;
        while (st > b && ((unsigned char)p[st] & 0xc0) == 0x80)
            st--;
        uint32_t cp;
        tm_utf8_decode(p + st, e - st, &cp);
        if (chars)
            SS_CHECK(tr_work(r, 0, nchars));
        if (!tb_in_chars(cp, chars, nchars))
            break;
        e = st;
    }
    SS_CHECK(tr_work(r, 0, b + (s.u.s.n - e)));
    *out = tv_sborrow(p + b, e - b);
    out->o = s.o;
    tv_incref(*out);
    return SS_OK;
}

ss_status tb_replace(tr *r, tv s, const char *old, size_t on, const char *nw, size_t nn, int64_t count, tv *out)
{
    tbuf b = {0};
    ss_status st = SS_OK;
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, i = 0;
    int64_t done = 0;
    if (on == 0) { /* inserts nw before every code point and at the end */
        while (st == SS_OK && (count < 0 || done < count) && i <= n) {
            st = tbuf_put(r, &b, nw, nn);
            done++;
            if (i == n) {
                i = n + 1;
                break;
            }
            uint32_t cp;
            size_t k = tm_utf8_decode(p + i, n - i, &cp);
            if (st == SS_OK)
                st = tbuf_put(r, &b, p + i, k);
            i += k;
        }
        if (st == SS_OK && i <= n)
            st = tbuf_put(r, &b, p + i, n - i);
    } else {
        while (st == SS_OK && i < n) {
            const char *hit = (count < 0 || done < count) ? memmem(p + i, n - i, old, on) : NULL;
            if (!hit) {
                st = tbuf_put(r, &b, p + i, n - i);
                break;
            }
            st = tbuf_put(r, &b, p + i, (size_t)(hit - (p + i)));
            if (st == SS_OK)
                st = tbuf_put(r, &b, nw, nn);
            i = (size_t)(hit - p) + on;
            done++;
        }
    }
    if (st != SS_OK) {
        tbuf_free(&b);
        return st;
    }
    return tv_str_take(r, &b, out);
}

static ss_status tb_push_view(tr *r, tv list, tv s, size_t off, size_t len)
{
    tv piece = tv_sborrow(s.u.s.p + off, len);
    piece.o = s.o;
    tv_incref(piece);
    return tv_list_push(r, list, piece);
}

/* Searching from the right: memmem over reversed copies of the text and the needle. Comparing the needle
 * at each position from the end took text size times needle size (hours for a long needle). */
typedef struct tb_rsearch {
    char *text, *needle; /* reversed, one ss_malloc block */
    size_t n, nn;
} tb_rsearch;

static ss_status tb_rsearch_init(tr *r, tb_rsearch *rs, const char *p, size_t n, const char *nd, size_t nn)
{
    rs->text = ss_malloc(n + nn + 1);
    if (!rs->text)
        return tr_fail(r, SS_ERR_NOMEM, NULL, "out of memory");
    rs->needle = rs->text + n;
    for (size_t i = 0; i < n; i++)
        rs->text[i] = p[n - 1 - i];
    for (size_t i = 0; i < nn; i++)
        rs->needle[i] = nd[nn - 1 - i];
    rs->n = n;
    rs->nn = nn;
    return SS_OK;
}

/* Byte offset of the last occurrence that ends by byte e of the text, or -1. */
static ptrdiff_t tb_rsearch_before(const tb_rsearch *rs, size_t e)
{
    const char *hit = memmem(rs->text + (rs->n - e), e, rs->needle, rs->nn);
    return hit ? (ptrdiff_t)(rs->n - (size_t)(hit - rs->text) - rs->nn) : -1;
}

/* Python str.split / rsplit (rsplit only differs with maxsplit). */
static ss_status tb_split(tr *r, const tn *at, tv s, const tv *sepv, const tv *maxv, int from_right, tv *out)
{
    int64_t maxsplit = -1;
    if (maxv)
        SS_CHECK(tb_arg_int(r, at, maxv, "maxsplit", &maxsplit));
    const char *p = s.u.s.p;
    size_t n = s.u.s.n;
    SS_CHECK(tr_work(r, 0, n)); /* one pass over s */
    SS_CHECK(tv_list_new(r, 0, 0, out));
    if (sepv && sepv->kind != TV_NONE) {
        const char *sep;
        size_t sn;
        SS_CHECK(tb_arg_str(r, at, sepv, "separator", &sep, &sn));
        if (sn == 0)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "empty separator");
        if (!from_right || maxsplit < 0) {
            size_t i = 0;
            int64_t done = 0;
            for (;;) {
                const char *hit = (maxsplit < 0 || done < maxsplit) ? memmem(p + i, n - i, sep, sn) : NULL;
                if (!hit) {
                    SS_CHECK(tb_push_view(r, *out, s, i, n - i));
                    return SS_OK;
                }
                SS_CHECK(tb_push_view(r, *out, s, i, (size_t)(hit - p) - i));
                i = (size_t)(hit - p) + sn;
                done++;
            }
        }
        /* rsplit with a limit: find separators from the right, then emit left to right (at most n / sn of
         * them fit; a fixed 64 used to drop the rest silently) */
        const size_t cap = (uint64_t)maxsplit < n / sn + 1 ? (size_t)maxsplit : n / sn + 1;
        size_t *cuts = ss_malloc((cap ? cap : 1) * sizeof *cuts);
        if (!cuts)
            return tr_fail(r, SS_ERR_NOMEM, at, "rsplit: out of memory");
        size_t nc = 0, e = n;
        tb_rsearch rs = {0};
        ss_status st = tb_rsearch_init(r, &rs, p, n, sep, sn);
        if (st != SS_OK) {
            ss_free(cuts);
            return st;
        }
        while (nc < cap) {
            ptrdiff_t j = tb_rsearch_before(&rs, e);
            if (j < 0)
                break;
            cuts[nc++] = (size_t)j;
            e = (size_t)j;
        }
        ss_free(rs.text);
        size_t start = 0;
        for (size_t k = nc; k-- > 0 && st == SS_OK;) {
            st = tb_push_view(r, *out, s, start, cuts[k] - start);
            start = cuts[k] + sn;
        }
        ss_free(cuts);
        return st != SS_OK ? st : tb_push_view(r, *out, s, start, n - start);
    }
    if (from_right && maxsplit >= 0)
        return tr_fail(r, SS_ERR_UNSUPPORTED, at, "rsplit() on whitespace with maxsplit is not supported");
    /* whitespace split: runs of whitespace, no empty pieces */
    size_t i = 0;
    int64_t done = 0;
    while (i < n) {
        uint32_t cp;
        size_t k;
        while (i < n && (k = tm_utf8_decode(p + i, n - i, &cp)) && tm_is_space(cp))
            i += k;
        if (i >= n)
            break;
        if (maxsplit >= 0 && done >= maxsplit) /* the rest as it is, trailing whitespace kept (as Python does) */
            return tb_push_view(r, *out, s, i, n - i);
        size_t b = i;
        while (i < n && (k = tm_utf8_decode(p + i, n - i, &cp)) && !tm_is_space(cp))
            i += k;
        SS_CHECK(tb_push_view(r, *out, s, b, i - b));
        done++;
    }
    return SS_OK;
}

ss_status tb_join(tr *r, const tn *at, tv seq, const char *sep, size_t sn, const char *attr, tv *out)
{
    tv list;
    SS_CHECK(tb_to_list(r, at, seq, &list));
    const tv_list_obj *l = TV_LIST_OF(list);
    tbuf b = {0};
    ss_status st = tr_work(r, l->n, 0); /* items that print nothing cost no output */
    for (size_t i = 0; i < l->n && st == SS_OK; i++) {
        if (i)
            st = tbuf_put(r, &b, sep, sn);
        if (st != SS_OK)
            break;
        if (attr) {
            tv item;
            st = tr_getattr(r, l->v[i], attr, strlen(attr), &item);
            if (st == SS_OK) {
                st = tv_write_str(r, &b, item);
                tv_decref(item);
            }
        } else {
            st = tv_write_str(r, &b, l->v[i]);
        }
    }
    tv_decref(list);
    if (st != SS_OK) {
        tbuf_free(&b);
        return st;
    }
    return tv_str_take(r, &b, out);
}

ss_status tb_html_escape(tr *r, tv s, tv *out)
{
    tbuf b = {0};
    ss_status st = SS_OK;
    for (size_t i = 0; i < s.u.s.n && st == SS_OK; i++) {
        char c = s.u.s.p[i];
        switch (c) {
        case '&':
            st = tbuf_puts(r, &b, "&amp;");
            break;
        case '<':
            st = tbuf_puts(r, &b, "&lt;");
            break;
        case '>':
            st = tbuf_puts(r, &b, "&gt;");
            break;
        case '"':
            st = tbuf_puts(r, &b, "&#34;");
            break;
        case '\'':
            st = tbuf_puts(r, &b, "&#39;");
            break;
        default:
            st = tbuf_putc(r, &b, c);
        }
    }
    if (st != SS_OK) {
        tbuf_free(&b);
        return st;
    }
    return tv_str_take(r, &b, out);
}

/* Jinja's indent filter: the text is split at line breaks (a trailing break leaves an empty last line);
 * lines after the first get the prefix (empty ones only with blank=True); first=True prefixes the result. */
ss_status tb_indent(tr *r, tv s, const char *pre, size_t pn, int first, int blank, tv *out)
{
    tbuf b = {0};
    ss_status st = first ? tbuf_put(r, &b, pre, pn) : SS_OK;
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, i = 0;
    for (int line_no = 0; st == SS_OK; line_no++) {
        size_t e = i;
        while (e < n && p[e] != '\n' && p[e] != '\r' && p[e] != '\v' && p[e] != '\f' && !(p[e] >= 0x1c && p[e] <= 0x1e))
            e++;
        if (line_no > 0) {
            st = tbuf_putc(r, &b, '\n');
            if (st == SS_OK && (blank || e > i))
                st = tbuf_put(r, &b, pre, pn);
        }
        if (st == SS_OK)
            st = tbuf_put(r, &b, p + i, e - i);
        if (e >= n)
            break;
        i = e + ((p[e] == '\r' && e + 1 < n && p[e + 1] == '\n') ? 2 : 1);
    }
    if (st != SS_OK) {
        tbuf_free(&b);
        return st;
    }
    return tv_str_take(r, &b, out);
}

int tb_str_all_case(tv s, int upper) /* callers count the scan (tr_work) */
{
    int cased = 0;
    for (size_t i = 0; i < s.u.s.n;) {
        uint32_t cp;
        i += tm_utf8_decode(s.u.s.p + i, s.u.s.n - i, &cp);
        utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
        if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LT) {
            if (!upper)
                return 0;
            cased = 1;
        } else if (c == UTF8PROC_CATEGORY_LL) {
            if (upper)
                return 0;
            cased = 1;
        }
    }
    return cased;
}

/* ---------------------------------------------------------------- methods */
static int tb_name_is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

static ss_status tb_affix(tr *r, const tn *at, tv s, const tv *arg, int suffix, int *res)
{
    *res = 0;
    if (!arg)
        return tr_fail(r, SS_ERR_INVALID_ARG, at, "%s() takes at least 1 argument", suffix ? "endswith" : "startswith");
    const tv *cands = arg;
    size_t nc = 1;
    if (arg->kind == TV_LIST) {
        cands = TV_LIST_OF(*arg)->v;
        nc = TV_LIST_OF(*arg)->n;
    }
    for (size_t i = 0; i < nc && !*res; i++) {
        const char *p;
        size_t n;
        SS_CHECK(tb_arg_str(r, at, &cands[i], suffix ? "endswith argument" : "startswith argument", &p, &n));
        SS_CHECK(tr_work(r, 1, n));
        if (n <= s.u.s.n)
            *res = n == 0 || memcmp(suffix ? s.u.s.p + s.u.s.n - n : s.u.s.p, p, n) == 0;
    }
    return SS_OK;
}

/* str.format with {} / {0} / {name} fields and no format specs. */
static ss_status tb_format(tr *r, const tn *at, tv s, const targs *a, tv *out)
{
    tbuf b = {0};
    ss_status st = SS_OK;
    size_t auto_idx = 0;
    const char *p = s.u.s.p;
    size_t n = s.u.s.n;
    for (size_t i = 0; i < n && st == SS_OK; i++) {
        if (p[i] == '{' && i + 1 < n && p[i + 1] == '{') {
            st = tbuf_putc(r, &b, '{');
            i++;
        } else if (p[i] == '}' && i + 1 < n && p[i + 1] == '}') {
            st = tbuf_putc(r, &b, '}');
            i++;
        } else if (p[i] == '{') {
            const char *close = memchr(p + i, '}', n - i);
            if (!close) {
                st = tr_fail(r, SS_ERR_INVALID_ARG, at, "single '{' encountered in format string");
                break;
            }
            size_t fl = (size_t)(close - (p + i + 1));
            const char *field = p + i + 1;
            const tv *v = NULL;
            if (memchr(field, ':', fl) || memchr(field, '!', fl) || memchr(field, '.', fl) || memchr(field, '[', fl)) {
                st = tr_fail(r, SS_ERR_UNSUPPORTED, at,
                             "format specs and field lookups in str.format are not supported");
                break;
            }
            if (fl == 0) {
                v = auto_idx < a->npos ? &a->pos[auto_idx] : NULL;
                auto_idx++;
            } else if (field[0] >= '0' && field[0] <= '9') {
                size_t k = 0;
                for (size_t j = 0; j < fl && k < 1000000; j++)
                    k = k * 10 + (size_t)(field[j] - '0');
                v = k < a->npos ? &a->pos[k] : NULL;
            } else {
                for (size_t k = 0; k < a->nkw; k++)
                    if (strlen(a->kwn[k]) == fl && !memcmp(a->kwn[k], field, fl))
                        v = &a->kwv[k];
            }
            if (!v) {
                st = tr_fail(r, SS_ERR_INVALID_ARG, at, "str.format: missing argument for field '{%.*s}'",
                             (int)(fl > 40 ? 40 : fl), field);
                break;
            }
            st = tv_write_str(r, &b, *v);
            i += fl + 1;
        } else if (p[i] == '}') {
            st = tr_fail(r, SS_ERR_INVALID_ARG, at, "single '}' encountered in format string");
        } else {
            st = tbuf_putc(r, &b, p[i]);
        }
    }
    if (st != SS_OK) {
        tbuf_free(&b);
        return st;
    }
    return tv_str_take(r, &b, out);
}

/* str.find / rfind / count. memmem, not a comparison at every position (text size times needle size), and
 * the code point index of the hit is counted once (rfind counted it at every hit: quadratic). */
static ss_status tb_find(tr *r, const tn *at, tv s, const tv *arg, int rev, int count, tv *out)
{
    const char *p;
    size_t n;
    SS_CHECK(tb_arg_str(r, at, arg, "substring", &p, &n));
    SS_CHECK(tr_work(r, 0, s.u.s.n));
    int64_t cnt = 0;
    ptrdiff_t found = -1;
    if (n == 0) {
        *out = tv_int(count ? (int64_t)tm_utf8_len(s.u.s.p, s.u.s.n) + 1
                      : rev ? (int64_t)tm_utf8_len(s.u.s.p, s.u.s.n)
                            : 0);
        return SS_OK;
    }
    if (rev) {
        tb_rsearch rs = {0};
        SS_CHECK(tb_rsearch_init(r, &rs, s.u.s.p, s.u.s.n, p, n));
        found = tb_rsearch_before(&rs, s.u.s.n);
        ss_free(rs.text);
    } else {
        for (size_t i = 0; i + n <= s.u.s.n;) {
            const char *hit = memmem(s.u.s.p + i, s.u.s.n - i, p, n);
            if (!hit)
                break;
            cnt++;
            found = hit - s.u.s.p;
            if (!count)
                break;
            i = (size_t)found + n;
        }
    }
    *out = tv_int(count ? cnt : found < 0 ? -1 : (int64_t)tm_utf8_len(s.u.s.p, (size_t)found));
    return SS_OK;
}

ss_status tb_method(tr *r, const tn *at, tv obj, const char *name, const tv *pos, size_t npos, const char *const *kwn,
                    const tv *kwv, size_t nkw, tv *out, int *handled)
{
    targs a = {pos, npos, kwn, kwv, nkw};
    *handled = 1;
    if (obj.kind == TV_STR) {
        int res;
        if (tb_name_is(name, "startswith") || tb_name_is(name, "endswith")) {
            SS_CHECK(tb_affix(r, at, obj, tb_arg(&a, 0, NULL), name[0] == 'e', &res));
            *out = tv_bool(res);
            return SS_OK;
        }
        if (tb_name_is(name, "strip") || tb_name_is(name, "lstrip") || tb_name_is(name, "rstrip")) {
            const tv *cv = tb_arg(&a, 0, NULL);
            const char *chars = NULL;
            size_t cn = 0;
            if (cv && cv->kind != TV_NONE)
                SS_CHECK(tb_arg_str(r, at, cv, "strip chars", &chars, &cn));
            return tb_strip(r, obj, chars, cn, name[0] != 'r', name[0] != 'l', out);
        }
        if (tb_name_is(name, "split") || tb_name_is(name, "rsplit"))
            return tb_split(r, at, obj, tb_arg(&a, 0, "sep"), tb_arg(&a, 1, "maxsplit"), name[0] == 'r', out);
        if (tb_name_is(name, "upper"))
            return tb_case(r, obj, CASE_UPPER, out);
        if (tb_name_is(name, "lower"))
            return tb_case(r, obj, CASE_LOWER, out);
        if (tb_name_is(name, "title"))
            return tb_case(r, obj, CASE_PYTITLE, out);
        if (tb_name_is(name, "capitalize"))
            return tb_case(r, obj, CASE_CAPITALIZE, out);
        if (tb_name_is(name, "replace")) {
            const char *o, *n;
            size_t on, nn;
            int64_t count = -1;
            SS_CHECK(tb_arg_str(r, at, tb_arg(&a, 0, NULL), "replace old", &o, &on));
            SS_CHECK(tb_arg_str(r, at, tb_arg(&a, 1, NULL), "replace new", &n, &nn));
            if (tb_arg(&a, 2, "count"))
                SS_CHECK(tb_arg_int(r, at, tb_arg(&a, 2, "count"), "count", &count));
            return tb_replace(r, obj, o, on, n, nn, count, out);
        }
        if (tb_name_is(name, "find") || tb_name_is(name, "rfind") || tb_name_is(name, "count"))
            return tb_find(r, at, obj, tb_arg(&a, 0, NULL), name[0] == 'r', name[0] == 'c', out);
        if (tb_name_is(name, "join")) {
            const tv *seq = tb_arg(&a, 0, NULL);
            if (!seq)
                return tr_fail(r, SS_ERR_INVALID_ARG, at, "join() takes exactly one argument");
            return tb_join(r, at, *seq, obj.u.s.p, obj.u.s.n, NULL, out);
        }
        if (tb_name_is(name, "splitlines")) {
            SS_CHECK(tr_work(r, 0, obj.u.s.n));
            SS_CHECK(tv_list_new(r, 0, 0, out));
            const char *p = obj.u.s.p;
            size_t n = obj.u.s.n, i = 0;
            while (i < n) {
                size_t e = i;
                while (e < n && p[e] != '\n' && p[e] != '\r')
                    e++;
                SS_CHECK(tb_push_view(r, *out, obj, i, e - i));
                i = e + ((e + 1 < n && p[e] == '\r' && p[e + 1] == '\n') ? 2 : 1);
            }
            return SS_OK;
        }
        if (tb_name_is(name, "format"))
            return tb_format(r, at, obj, &a, out);
        if (tb_name_is(name, "isdigit") || tb_name_is(name, "isalpha") || tb_name_is(name, "isalnum") ||
            tb_name_is(name, "isspace")) {
            SS_CHECK(tr_work(r, 0, obj.u.s.n));
            int ok = obj.u.s.n > 0;
            for (size_t i = 0; i < obj.u.s.n && ok;) {
                uint32_t cp;
                i += tm_utf8_decode(obj.u.s.p + i, obj.u.s.n - i, &cp);
                utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
                int digit = c == UTF8PROC_CATEGORY_ND, alpha = c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
                if (name[2] == 'd')
                    ok = digit;
                else if (name[3] == 'l' && name[4] == 'p')
                    ok = alpha;
                else if (name[2] == 'a')
                    ok = alpha || digit || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
                else
                    ok = tm_is_space(cp);
            }
            *out = tv_bool(ok);
            return SS_OK;
        }
        if (tb_name_is(name, "islower") || tb_name_is(name, "isupper")) {
            SS_CHECK(tr_work(r, 0, obj.u.s.n));
            *out = tv_bool(tb_str_all_case(obj, name[2] == 'u'));
            return SS_OK;
        }
        return tr_fail(r, SS_ERR_UNSUPPORTED, at, "string method '%s' is not supported", name);
    }
    if (obj.kind == TV_DICT) {
        if (tb_name_is(name, "items"))
            return tb_dict_items(r, at, obj, out);
        if (tb_name_is(name, "keys"))
            return tb_to_list(r, at, obj, out);
        if (tb_name_is(name, "values")) {
            const tv_dict_obj *d = TV_DICT_OF(obj);
            SS_CHECK(tv_list_new(r, d->n, 0, out));
            for (size_t i = 0; i < d->n; i++) {
                tv_incref(d->v[i]);
                SS_CHECK(tv_list_push(r, *out, d->v[i]));
            }
            return SS_OK;
        }
        if (tb_name_is(name, "get")) {
            const tv *k = tb_arg(&a, 0, "key"), *d = tb_arg(&a, 1, "default");
            if (!k)
                return tr_fail(r, SS_ERR_INVALID_ARG, at, "get() needs a key");
            const tv *hit;
            SS_CHECK(tv_dict_get(r, obj, *k, &hit));
            *out = hit ? *hit : d ? *d : tv_none();
            tv_incref(*out);
            return SS_OK;
        }
        const tv *stored;
        SS_CHECK(tv_dict_gets(r, obj, name, strlen(name), &stored));
        if (stored) {
            *handled = 0; /* a callable stored under that key */
            return SS_OK;
        }
        return tr_fail(r, SS_ERR_UNSUPPORTED, at, "dict method '%s' is not supported", name);
    }
    if (obj.kind == TV_LOOP && tb_name_is(name, "cycle")) {
        if (npos == 0)
            return tr_fail(r, SS_ERR_INVALID_ARG, at, "no items for cycling given");
        *out = pos[((tv_loop_obj *)obj.o)->index0 % (int64_t)npos];
        tv_incref(*out);
        return SS_OK;
    }
    if (obj.kind == TV_UNDEF)
        return obj.u.undef ? tr_fail(r, SS_ERR_INVALID_ARG, at, "'%s' is undefined", obj.u.undef)
                           : tr_fail(r, SS_ERR_INVALID_ARG, at, "cannot call '%s' on an undefined value", name);
    if (obj.kind == TV_LIST && (tb_name_is(name, "append") || tb_name_is(name, "pop") || tb_name_is(name, "extend") ||
                                tb_name_is(name, "insert") || tb_name_is(name, "remove") || tb_name_is(name, "clear")))
        return tr_fail(r, SS_ERR_UNSUPPORTED, at, "list.%s() modifies a list, which the sandbox forbids", name);
    *handled = 0;
    return SS_OK;
}
