/* tmpl_lex.c — splits a Jinja template into text and tag tokens with Jinja2's exact whitespace rules as
 * transformers configures them: trim_blocks, lstrip_blocks, `-`/`+` markers, newline normalization and
 * the removal of one trailing newline (keep_trailing_newline=False). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "template/tmpl_internal.h"

typedef struct tl {
    tm_arena *a;
    const char *src; /* normalized source */
    size_t n, pos;
    int line;
    int line_starting; /* the previous match ended with '\n' (for lstrip_blocks) */
    const char *name;
    ss_err *err;
    tm_token *toks;
    size_t ntoks, cap;
    char bal[SS_TEMPLATE_MAX_NESTING];
    int nbal;
} tl;

static ss_status tl_fail(tl *l, int line, const char *fmt, const char *arg)
{
    char msg[256];
    snprintf(msg, sizeof(msg), fmt, arg);
    return ss_err_set(l->err, SS_ERR_FORMAT, "%s:%d: %s", l->name, line, msg);
}

static ss_status tl_push(tl *l, tk_kind kind, const char *s, size_t n)
{
    if (l->ntoks == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        tm_token *nt = ss_realloc(l->toks, cap * sizeof(*nt));
        if (!nt)
            return ss_err_set(l->err, SS_ERR_NOMEM, "%s: out of memory", l->name);
        l->toks = nt;
        l->cap = cap;
    }
    tm_token *t = &l->toks[l->ntoks++];
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->line = l->line;
    t->s = s;
    t->n = n;
    return SS_OK;
}

static char *tl_copy(tl *l, const char *s, size_t n)
{
    char *p = tm_arena_alloc(l->a, n + 1);
    if (p && n)
        memcpy(p, s, n);
    return p;
}

static int tl_count_nl(const char *s, size_t n)
{
    int c = 0;
    for (size_t i = 0; i < n; i++)
        c += s[i] == '\n';
    return c;
}

/* Length of the Python-\s whitespace run at p (code points that str.isspace() accepts). */
static size_t tl_space_run(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = tm_utf8_decode(p + i, n - i, &cp);
        if (!tm_is_space(cp))
            break;
        i += k;
    }
    return i;
}

/* Python str.rstrip(): length after removing trailing whitespace. */
static size_t tl_rstrip_len(const char *p, size_t n)
{
    size_t end = n;
    while (end > 0) {
        size_t start = end - 1;
        while (start > 0 && ((unsigned char)p[start] & 0xc0) == 0x80)
            start--;
        uint32_t cp;
        tm_utf8_decode(p + start, end - start, &cp);
        if (!tm_is_space(cp))
            break;
        end = start;
    }
    return end;
}

/* Emits the text before a tag, applying `-` (strip all whitespace) or lstrip_blocks. */
static ss_status tl_text(tl *l, const char *text, size_t n, char sign, int is_var)
{
    int newlines_stripped = 0;
    if (sign == '-') {
        size_t k = tl_rstrip_len(text, n);
        newlines_stripped = tl_count_nl(text + k, n - k);
        n = k;
    } else if (sign != '+' && !is_var) {
        size_t lpos = 0;
        for (size_t i = n; i > 0; i--)
            if (text[i - 1] == '\n') {
                lpos = i;
                break;
            }
        if ((lpos > 0 || l->line_starting) && lpos < n && tl_space_run(text + lpos, n - lpos) == n - lpos)
            n = lpos;
    }
    if (n) {
        char *p = tl_copy(l, text, n);
        if (!p)
            return ss_err_set(l->err, SS_ERR_NOMEM, "%s: out of memory", l->name);
        SS_CHECK(tl_push(l, TK_DATA, p, n));
    }
    l->line += tl_count_nl(text, n) + newlines_stripped;
    return SS_OK;
}

static int tl_starts(const tl *l, size_t at, const char *s)
{
    size_t k = strlen(s);
    return at + k <= l->n && memcmp(l->src + at, s, k) == 0;
}

/* Matches a tag end at pos: "+E", "-E" + whitespace, or "E" (+ one '\n' when trim applies). Returns the
 * length matched, 0 when none. */
static size_t tl_end_at(const tl *l, size_t at, const char *end, int trim)
{
    size_t k = strlen(end);
    if ((l->src[at] == '+' || l->src[at] == '-') && tl_starts(l, at + 1, end)) {
        if (l->src[at] == '+')
            return k + 1;
        return k + 1 + tl_space_run(l->src + at + 1 + k, l->n - at - 1 - k);
    }
    if (tl_starts(l, at, end)) {
        if (trim && at + k < l->n && l->src[at + k] == '\n')
            return k + 1;
        return k;
    }
    return 0;
}

static int tl_is_digit(char c)
{
    return c >= '0' && c <= '9';
}
static int tl_is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* (\d+_)*\d+ at p; returns length or 0. */
static size_t tl_digits(const char *p, size_t n)
{
    size_t i = 0;
    if (i >= n || !tl_is_digit(p[i]))
        return 0;
    while (i < n) {
        if (tl_is_digit(p[i]))
            i++;
        else if (p[i] == '_' && i + 1 < n && tl_is_digit(p[i + 1]))
            i++;
        else
            break;
    }
    return i;
}

static void tl_strip_underscores(const char *p, size_t n, char *out, size_t outcap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < outcap; i++)
        if (p[i] != '_')
            out[o++] = p[i];
    out[o] = '\0';
}

static ss_status tl_number(tl *l, int *matched)
{
    const char *p = l->src + l->pos;
    size_t n = l->n - l->pos;
    *matched = 0;
    if (!tl_is_digit(p[0]))
        return SS_OK;
    size_t d = tl_digits(p, n), len = 0;
    /* float: digits ((.digits)? e[+-]?digits | .digits) */
    size_t i = d;
    size_t frac = 0;
    if (i < n && p[i] == '.')
        frac = tl_digits(p + i + 1, n - i - 1);
    size_t j = frac ? i + 1 + frac : i;
    if (j < n && (p[j] == 'e' || p[j] == 'E')) {
        size_t k = j + 1;
        if (k < n && (p[k] == '+' || p[k] == '-'))
            k++;
        size_t ed = tl_digits(p + k, n - k);
        if (ed)
            len = k + ed;
    }
    if (!len && frac)
        len = i + 1 + frac;
    char buf[128];
    if (len) {
        if (len >= sizeof(buf))
            return tl_fail(l, l->line, "number literal too long", "");
        tl_strip_underscores(p, len, buf, sizeof(buf));
        SS_CHECK(tl_push(l, TK_FLOAT, NULL, 0));
        l->toks[l->ntoks - 1].f = strtod(buf, NULL);
        l->pos += len;
        *matched = 1;
        return SS_OK;
    }
    int base = 10;
    size_t start = 0;
    if (p[0] == '0' && n > 1 &&
        (p[1] == 'x' || p[1] == 'X' || p[1] == 'o' || p[1] == 'O' || p[1] == 'b' || p[1] == 'B')) {
        base = (p[1] == 'x' || p[1] == 'X') ? 16 : (p[1] == 'o' || p[1] == 'O') ? 8 : 2;
        start = 2;
        len = 2;
        while (len < n &&
               (p[len] == '_' || (base == 16 && strchr("0123456789abcdefABCDEF", p[len]) && p[len]) ||
                (base == 8 && p[len] >= '0' && p[len] <= '7') || (base == 2 && (p[len] == '0' || p[len] == '1'))))
            len++;
        if (len == 2)
            return tl_fail(l, l->line, "invalid integer literal", "");
    } else {
        len = d;
    }
    if (len - start >= sizeof(buf))
        return tl_fail(l, l->line, "integer literal too long", "");
    tl_strip_underscores(p + start, len - start, buf, sizeof(buf));
    char *end = NULL;
    unsigned long long v = strtoull(buf, &end, base);
    if (v > (unsigned long long)INT64_MAX || (end && *end))
        return tl_fail(l, l->line, "integer literal out of range", "");
    SS_CHECK(tl_push(l, TK_INT, NULL, 0));
    l->toks[l->ntoks - 1].i = (int64_t)v;
    l->pos += len;
    *matched = 1;
    return SS_OK;
}

/* Python "unicode-escape" decoding of a string literal's body. */
static ss_status tl_string(tl *l)
{
    const char *p = l->src + l->pos;
    size_t n = l->n - l->pos;
    char q = p[0];
    size_t i = 1;
    while (i < n && p[i] != q) {
        if (p[i] == '\\' && i + 1 < n)
            i++;
        i++;
    }
    if (i >= n)
        return tl_fail(l, l->line, "unexpected char %s (unterminated string)", q == '"' ? "'\"'" : "\"'\"");
    size_t body = i - 1;
    char *out = tm_arena_alloc(l->a, body + 1);
    if (!out)
        return ss_err_set(l->err, SS_ERR_NOMEM, "%s: out of memory", l->name);
    size_t o = 0;
    const char *s = p + 1;
    for (size_t k = 0; k < body;) {
        if (s[k] != '\\') {
            out[o++] = s[k++];
            continue;
        }
        char c = s[k + 1];
        k += 2;
        uint32_t cp = 0;
        int hex = 0;
        switch (c) {
        case 'n':
            out[o++] = '\n';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case '\\':
            out[o++] = '\\';
            break;
        case '\'':
            out[o++] = '\'';
            break;
        case '"':
            out[o++] = '"';
            break;
        case 'a':
            out[o++] = '\a';
            break;
        case 'b':
            out[o++] = '\b';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'v':
            out[o++] = '\v';
            break;
        case '\n':
            break; /* line continuation */
        case 'x':
            hex = 2;
            break;
        case 'u':
            hex = 4;
            break;
        case 'U':
            hex = 8;
            break;
        default:
            if (c >= '0' && c <= '7') {
                cp = (uint32_t)(c - '0');
                for (int d = 0; d < 2 && k < body && s[k] >= '0' && s[k] <= '7'; d++)
                    cp = cp * 8 + (uint32_t)(s[k++] - '0');
                char enc[4];
                size_t m = tm_utf8_encode(cp, enc);
                memcpy(out + o, enc, m);
                o += m;
            } else if (c == 'N') {
                return tl_fail(l, l->line, "unsupported string escape \\N{...}", "");
            } else {
                out[o++] = '\\';
                out[o++] = c;
            }
        }
        if (hex) {
            for (int d = 0; d < hex; d++, k++) {
                char h = k < body ? s[k] : 0;
                int v = (h >= '0' && h <= '9')   ? h - '0'
                        : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                        : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                                 : -1;
                if (v < 0)
                    return tl_fail(l, l->line, "truncated \\%s escape in string literal",
                                   hex == 2   ? "x"
                                   : hex == 4 ? "u"
                                              : "U");
                cp = cp * 16 + (uint32_t)v;
            }
            if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return tl_fail(l, l->line, "invalid code point escape in string literal", "");
            char enc[4];
            size_t m = tm_utf8_encode(cp, enc);
            memcpy(out + o, enc, m);
            o += m;
        }
    }
    out[o] = '\0';
    SS_CHECK(tl_push(l, TK_STRING, out, o));
    l->line += tl_count_nl(p, i + 1);
    l->pos += i + 1;
    return SS_OK;
}

static const char *const tl_ops[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]",
                                     "(",  ")",  "{",  "}",  ">",  "<",  "=", ".", ":", "|", ",", ";", NULL};

/* Tokens inside {{ }} or {% %} up to and including the end marker. */
static ss_status tl_tag(tl *l, int is_block)
{
    const char *end = is_block ? "%}" : "}}";
    int open_line = l->line;
    l->nbal = 0;
    for (;;) {
        if (l->pos >= l->n)
            return tl_fail(l, open_line, "unexpected end of template: unterminated %s tag", is_block ? "'{%'" : "'{{'");
        if (l->nbal == 0) {
            size_t k = tl_end_at(l, l->pos, end, is_block);
            if (k) {
                SS_CHECK(tl_push(l, is_block ? TK_BLOCK_END : TK_VAR_END, NULL, 0));
                l->line_starting = l->src[l->pos + k - 1] == '\n';
                l->line += tl_count_nl(l->src + l->pos, k);
                l->pos += k;
                return SS_OK;
            }
        }
        const char *p = l->src + l->pos;
        size_t rem = l->n - l->pos;
        size_t ws = tl_space_run(p, rem);
        if (ws) {
            l->line += tl_count_nl(p, ws);
            l->pos += ws;
            continue;
        }
        int matched = 0;
        SS_CHECK(tl_number(l, &matched));
        if (matched)
            continue;
        if (tl_is_alpha(p[0])) {
            size_t k = 1;
            while (k < rem && (tl_is_alpha(p[k]) || tl_is_digit(p[k])))
                k++;
            char *s = tl_copy(l, p, k);
            if (!s)
                return ss_err_set(l->err, SS_ERR_NOMEM, "%s: out of memory", l->name);
            SS_CHECK(tl_push(l, TK_NAME, s, k));
            l->pos += k;
            continue;
        }
        if (p[0] == '\'' || p[0] == '"') {
            SS_CHECK(tl_string(l));
            continue;
        }
        const char *op = NULL;
        for (int i = 0; tl_ops[i]; i++)
            if (tl_starts(l, l->pos, tl_ops[i])) {
                op = tl_ops[i];
                break;
            }
        if (!op) {
            char c[8];
            snprintf(c, sizeof(c), "'%c'", (p[0] >= 0x20 && p[0] < 0x7f) ? p[0] : '?');
            return tl_fail(l, l->line, "unexpected char %s", c);
        }
        if (op[0] == '(' || op[0] == '[' || op[0] == '{') {
            if (l->nbal >= SS_TEMPLATE_MAX_NESTING)
                return ss_err_set(l->err, SS_ERR_CAPACITY, "%s:%d: brackets nested more than %d deep", l->name, l->line,
                                  SS_TEMPLATE_MAX_NESTING);
            l->bal[l->nbal++] = op[0] == '(' ? ')' : op[0] == '[' ? ']' : '}';
        } else if (op[0] == ')' || op[0] == ']' || op[0] == '}') {
            if (l->nbal == 0 || l->bal[l->nbal - 1] != op[0])
                return tl_fail(l, l->line, "unexpected '%s'", op);
            l->nbal--;
        }
        SS_CHECK(tl_push(l, TK_OP, op, strlen(op)));
        l->pos += strlen(op);
    }
}

/* Matches "{%[-+]?\s*raw\s*(-%}\s*|%})" at at; returns its length or 0. */
static size_t tl_raw_begin(const tl *l, size_t at, char *sign)
{
    size_t i = at + 2;
    *sign = 0;
    if (i < l->n && (l->src[i] == '-' || l->src[i] == '+'))
        *sign = l->src[i++];
    i += tl_space_run(l->src + i, l->n - i);
    if (!tl_starts(l, i, "raw"))
        return 0;
    i += 3;
    i += tl_space_run(l->src + i, l->n - i);
    if (tl_starts(l, i, "-%}"))
        return i + 3 + tl_space_run(l->src + i + 3, l->n - i - 3) - at;
    if (tl_starts(l, i, "%}"))
        return i + 2 - at;
    return 0;
}

static ss_status tl_raw(tl *l, int open_line)
{
    for (size_t i = l->pos; i + 1 < l->n; i++) {
        if (l->src[i] != '{' || l->src[i + 1] != '%')
            continue;
        size_t j = i + 2;
        char sign = 0;
        if (j < l->n && (l->src[j] == '-' || l->src[j] == '+'))
            sign = l->src[j++];
        j += tl_space_run(l->src + j, l->n - j);
        if (!tl_starts(l, j, "endraw"))
            continue;
        j += 6;
        j += tl_space_run(l->src + j, l->n - j);
        size_t k = tl_end_at(l, j, "%}", 1);
        if (!k)
            continue;
        SS_CHECK(tl_text(l, l->src + l->pos, i - l->pos, sign, 0));
        l->line_starting = l->src[j + k - 1] == '\n';
        l->line += tl_count_nl(l->src + i, j + k - i);
        l->pos = j + k;
        return SS_OK;
    }
    return tl_fail(l, open_line, "missing end of raw directive", "");
}

ss_status tm_lex(tm_arena *a, const char *src, size_t len, const char *name, tm_token **toks, size_t *ntoks,
                 ss_err *err)
{
    tl l = {.a = a, .name = name, .err = err, .line = 1, .line_starting = 1};
    char *norm = tm_arena_alloc(a, len + 1);
    if (!norm)
        return ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", name);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            norm[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            norm[n++] = src[i];
        }
    }
    if (n > 0 && norm[n - 1] == '\n')
        n--;
    l.src = norm;
    l.n = n;
    ss_status st = SS_OK;
    while (l.pos < l.n && st == SS_OK) {
        size_t open = l.pos;
        while (open + 1 < l.n &&
               !(l.src[open] == '{' && (l.src[open + 1] == '{' || l.src[open + 1] == '%' || l.src[open + 1] == '#')))
            open++;
        if (open + 1 >= l.n) { /* the rest is text */
            st = tl_text(&l, l.src + l.pos, l.n - l.pos, 0, 1);
            l.pos = l.n;
            break;
        }
        char kind = l.src[open + 1];
        char sign = 0, raw_sign = 0;
        size_t raw_len = kind == '%' ? tl_raw_begin(&l, open, &raw_sign) : 0;
        if (raw_len) {
            st = tl_text(&l, l.src + l.pos, open - l.pos, raw_sign, 0);
            if (st != SS_OK)
                break;
            int line = l.line;
            l.line_starting = l.src[open + raw_len - 1] == '\n';
            l.line += tl_count_nl(l.src + open, raw_len);
            l.pos = open + raw_len;
            st = tl_raw(&l, line);
            continue;
        }
        if (open + 2 < l.n && (l.src[open + 2] == '-' || l.src[open + 2] == '+'))
            sign = l.src[open + 2];
        st = tl_text(&l, l.src + l.pos, open - l.pos, sign, kind == '{');
        if (st != SS_OK)
            break;
        l.pos = open + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            size_t i = l.pos, k = 0;
            for (; i < l.n; i++)
                if ((k = tl_end_at(&l, i, "#}", 1)) != 0)
                    break;
            if (!k) {
                st = tl_fail(&l, l.line, "missing end of comment tag", "");
                break;
            }
            l.line_starting = l.src[i + k - 1] == '\n';
            l.line += tl_count_nl(l.src + l.pos, i + k - l.pos);
            l.pos = i + k;
            continue;
        }
        st = tl_push(&l, kind == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, NULL, 0);
        if (st == SS_OK)
            st = tl_tag(&l, kind == '%');
    }
    if (st == SS_OK)
        st = tl_push(&l, TK_EOF, NULL, 0);
    if (st != SS_OK) {
        ss_free(l.toks);
        return st;
    }
    /* Move the token array into the arena so the template owns one allocation set. */
    tm_token *t = tm_arena_alloc(a, l.ntoks * sizeof(*t));
    if (!t) {
        ss_free(l.toks);
        return ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", name);
    }
    memcpy(t, l.toks, l.ntoks * sizeof(*t));
    ss_free(l.toks);
    *toks = t;
    *ntoks = l.ntoks;
    return SS_OK;
}
