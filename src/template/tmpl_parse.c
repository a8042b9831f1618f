/* tmpl_parse.c — recursive-descent parser from template tokens to the syntax tree, following Jinja2's
 * grammar and operator precedence. Tags, filters and tests outside the supported subset are refused
 * here with their name and line. */
#include <stdio.h>
#include <string.h>

#include "template/tmpl_internal.h"

typedef struct tp {
    tm_arena *a;
    const tm_token *t;
    size_t n, i;
    const char *name;
    ss_err *err;
    int depth;
    int loops; /* for loops open around the current position (break/continue need one) */
} tp;

static const tm_token *cur(const tp *p)
{
    return &p->t[p->i];
}
static const tm_token *peek(const tp *p, size_t k)
{
    return &p->t[p->i + k < p->n ? p->i + k : p->n - 1];
}
static void adv(tp *p)
{
    if (p->i + 1 < p->n)
        p->i++;
}

static int is_op(const tm_token *t, const char *op)
{
    return t->kind == TK_OP && strcmp(t->s, op) == 0;
}
static int is_name(const tm_token *t, const char *nm)
{
    return t->kind == TK_NAME && t->n == strlen(nm) && memcmp(t->s, nm, t->n) == 0;
}

static const char *tok_desc(const tm_token *t, char *buf, size_t cap)
{
    switch (t->kind) {
    case TK_EOF:
        return "end of template";
    case TK_DATA:
        return "template data";
    case TK_VAR_BEGIN:
        return "'{{'";
    case TK_VAR_END:
        return "end of print statement";
    case TK_BLOCK_BEGIN:
        return "'{%'";
    case TK_BLOCK_END:
        return "end of statement block";
    case TK_STRING:
        return "string";
    case TK_INT:
        return "integer";
    case TK_FLOAT:
        return "float";
    case TK_NAME:
    case TK_OP:
        snprintf(buf, cap, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s);
        return buf;
    }
    return "?";
}

static ss_status p_fail(tp *p, ss_status st, const char *fmt, const char *a1, const char *a2)
{
    char msg[512];
    snprintf(msg, sizeof(msg), fmt, a1, a2);
    return ss_err_set(p->err, st, "%s:%d: %s", p->name, cur(p)->line, msg);
}

static ss_status p_unexpected(tp *p, const char *expected)
{
    char buf[64];
    return p_fail(p, SS_ERR_FORMAT, "unexpected %s, expected %s", tok_desc(cur(p), buf, sizeof(buf)), expected);
}

static ss_status p_nomem(tp *p)
{
    return ss_err_set(p->err, SS_ERR_NOMEM, "%s: out of memory", p->name);
}

static tn *p_node(tp *p, tn_kind kind, int line)
{
    tn *nd = tm_arena_alloc(p->a, sizeof(tn));
    if (nd) {
        nd->kind = kind;
        nd->line = line;
    }
    return nd;
}

#define NEW(var, kind, line)                                                                                           \
    tn *var = p_node(p, (kind), line);                                                                                 \
    if (!var)                                                                                                          \
        return p_nomem(p);

/* Appends to an arena-backed child array (the arena absorbs the old array when it grows). */
static ss_status p_add(tp *p, tn *parent, tn *kid, size_t *cap)
{
    if (parent->nkids == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        tn **nk = tm_arena_alloc(p->a, nc * sizeof(tn *));
        if (!nk)
            return p_nomem(p);
        if (parent->nkids)
            memcpy(nk, parent->kids, parent->nkids * sizeof(tn *));
        parent->kids = nk;
        *cap = nc;
    }
    parent->kids[parent->nkids++] = kid;
    return SS_OK;
}

static ss_status p_expect_op(tp *p, const char *op)
{
    if (!is_op(cur(p), op)) {
        char want[16];
        snprintf(want, sizeof(want), "'%s'", op);
        return p_unexpected(p, want);
    }
    adv(p);
    return SS_OK;
}

static ss_status p_enter(tp *p)
{
    if (++p->depth > SS_TEMPLATE_MAX_NESTING)
        return ss_err_set(p->err, SS_ERR_CAPACITY, "%s:%d: template nested more than %d deep", p->name, cur(p)->line,
                          SS_TEMPLATE_MAX_NESTING);
    return SS_OK;
}

static ss_status p_expr(tp *p, int with_cond, tn **out);
static ss_status p_tuple(tp *p, int with_cond, int explicit_parens, tn **out);
static ss_status p_unary(tp *p, int with_filter, tn **out);
static ss_status p_primary(tp *p, tn **out);

/* Call arguments after '(' up to and including ')': positional expressions and name=value. */
static ss_status p_call_args(tp *p, tn *call)
{
    size_t cap = 0;
    SS_CHECK(p_expect_op(p, "("));
    int seen_kw = 0;
    while (!is_op(cur(p), ")")) {
        if (call->nkids) {
            SS_CHECK(p_expect_op(p, ","));
            if (is_op(cur(p), ")"))
                break;
        }
        if (is_op(cur(p), "*") || is_op(cur(p), "**"))
            return p_fail(p, SS_ERR_UNSUPPORTED, "%s%s: *args / **kwargs in calls are not supported", "", "");
        tn *arg;
        if (cur(p)->kind == TK_NAME && is_op(peek(p, 1), "=")) {
            NEW(kw, N_KWARG, cur(p)->line);
            kw->s = cur(p)->s;
            kw->n = cur(p)->n;
            adv(p);
            adv(p);
            SS_CHECK(p_expr(p, 1, &kw->a));
            arg = kw;
            seen_kw = 1;
        } else {
            if (seen_kw)
                return p_fail(p, SS_ERR_FORMAT, "positional argument after keyword argument%s%s", "", "");
            SS_CHECK(p_expr(p, 1, &arg));
        }
        SS_CHECK(p_add(p, call, arg, &cap));
    }
    adv(p);
    return SS_OK;
}

static ss_status p_subscript(tp *p, tn *obj, tn **out)
{
    int line = cur(p)->line;
    adv(p); /* '[' */
    tn *parts[3] = {NULL, NULL, NULL};
    int idx = 0, is_slice = 0;
    for (;;) {
        if (is_op(cur(p), ":")) {
            is_slice = 1;
            if (++idx > 2)
                return p_unexpected(p, "']'");
            adv(p);
            continue;
        }
        if (is_op(cur(p), "]"))
            break;
        if (parts[idx])
            return p_unexpected(p, "':' or ']'");
        SS_CHECK(p_expr(p, 1, &parts[idx]));
    }
    adv(p);
    if (is_slice) {
        NEW(s, N_SLICE, line);
        s->a = obj;
        s->b = parts[0];
        s->c = parts[1];
        s->d = parts[2];
        *out = s;
    } else {
        if (!parts[0])
            return p_fail(p, SS_ERR_FORMAT, "empty subscript%s%s", "", "");
        NEW(it, N_ITEM, line);
        it->a = obj;
        it->b = parts[0];
        *out = it;
    }
    return SS_OK;
}

static ss_status p_postfix(tp *p, tn **node)
{
    for (;;) {
        const tm_token *t = cur(p);
        if (is_op(t, ".")) {
            adv(p);
            const tm_token *a = cur(p);
            if (a->kind == TK_NAME) {
                NEW(at, N_ATTR, a->line);
                at->a = *node;
                at->s = a->s;
                at->n = a->n;
                adv(p);
                *node = at;
            } else if (a->kind == TK_INT) {
                NEW(it, N_ITEM, a->line);
                NEW(k, N_INT, a->line);
                k->i = a->i;
                it->a = *node;
                it->b = k;
                adv(p);
                *node = it;
            } else {
                return p_unexpected(p, "attribute name");
            }
        } else if (is_op(t, "[")) {
            SS_CHECK(p_subscript(p, *node, node));
        } else if (is_op(t, "(")) {
            NEW(c, N_CALL, t->line);
            c->a = *node;
            SS_CHECK(p_call_args(p, c));
            *node = c;
        } else {
            return SS_OK;
        }
    }
}

static ss_status p_filter_expr(tp *p, tn **node)
{
    for (;;) {
        const tm_token *t = cur(p);
        if (is_op(t, "|")) {
            adv(p);
            const tm_token *nm = cur(p);
            if (nm->kind != TK_NAME)
                return p_unexpected(p, "filter name");
            int id = tm_filter_id(nm->s, nm->n);
            if (id < 0)
                return p_fail(p, SS_ERR_UNSUPPORTED, "no filter named '%s'%s", nm->s, "");
            NEW(f, N_FILTER, nm->line);
            f->op = id;
            f->s = nm->s;
            f->a = *node;
            adv(p);
            if (is_op(cur(p), "("))
                SS_CHECK(p_call_args(p, f));
            *node = f;
        } else if (is_name(t, "is")) {
            adv(p);
            int neg = 0;
            if (is_name(cur(p), "not")) {
                neg = 1;
                adv(p);
            }
            const tm_token *nm = cur(p);
            if (nm->kind != TK_NAME)
                return p_unexpected(p, "test name");
            int id = tm_test_id(nm->s, nm->n);
            if (id < 0)
                return p_fail(p, SS_ERR_UNSUPPORTED, "no test named '%s'%s", nm->s, "");
            NEW(te, N_TEST, nm->line);
            te->op = id;
            te->s = nm->s;
            te->i = neg;
            te->a = *node;
            adv(p);
            const tm_token *n2 = cur(p);
            if (is_op(n2, "(")) {
                SS_CHECK(p_call_args(p, te));
            } else if ((n2->kind == TK_NAME || n2->kind == TK_STRING || n2->kind == TK_INT || n2->kind == TK_FLOAT ||
                        is_op(n2, "[") || is_op(n2, "{")) &&
                       !is_name(n2, "else") && !is_name(n2, "or") && !is_name(n2, "and")) {
                if (is_name(n2, "is"))
                    return p_fail(p, SS_ERR_FORMAT, "you cannot chain multiple tests with is%s%s", "", "");
                tn *arg;
                SS_CHECK(p_primary(p, &arg));
                SS_CHECK(p_postfix(p, &arg));
                te->kids = tm_arena_alloc(p->a, sizeof(tn *));
                if (!te->kids)
                    return p_nomem(p);
                te->kids[0] = arg;
                te->nkids = 1;
            }
            *node = te;
        } else if (is_op(t, "(")) {
            NEW(c, N_CALL, t->line);
            c->a = *node;
            SS_CHECK(p_call_args(p, c));
            *node = c;
        } else {
            return SS_OK;
        }
    }
}

static ss_status p_primary(tp *p, tn **out)
{
    const tm_token *t = cur(p);
    switch (t->kind) {
    case TK_NAME: {
        if (is_name(t, "true") || is_name(t, "True") || is_name(t, "false") || is_name(t, "False")) {
            NEW(b, N_BOOL, t->line);
            b->i = t->s[0] == 't' || t->s[0] == 'T';
            *out = b;
        } else if (is_name(t, "none") || is_name(t, "None")) {
            NEW(nn, N_NONE, t->line);
            *out = nn;
        } else {
            NEW(nm, N_NAME, t->line);
            nm->s = t->s;
            nm->n = t->n;
            *out = nm;
        }
        adv(p);
        return SS_OK;
    }
    case TK_STRING: {
        NEW(s, N_STR, t->line);
        size_t total = 0, k = 0;
        while (peek(p, k)->kind == TK_STRING)
            total += peek(p, k++)->n;
        char *buf = tm_arena_alloc(p->a, total + 1);
        if (!buf)
            return p_nomem(p);
        size_t o = 0;
        while (cur(p)->kind == TK_STRING) {
            memcpy(buf + o, cur(p)->s, cur(p)->n);
            o += cur(p)->n;
            adv(p);
        }
        s->s = buf;
        s->n = total;
        *out = s;
        return SS_OK;
    }
    case TK_INT: {
        NEW(i, N_INT, t->line);
        i->i = t->i;
        adv(p);
        *out = i;
        return SS_OK;
    }
    case TK_FLOAT: {
        NEW(f, N_FLOAT, t->line);
        f->f = t->f;
        adv(p);
        *out = f;
        return SS_OK;
    }
    case TK_OP:
        if (is_op(t, "(")) {
            adv(p);
            if (is_op(cur(p), ")")) {
                adv(p);
                NEW(tu, N_TUPLE, t->line);
                *out = tu;
                return SS_OK;
            }
            SS_CHECK(p_tuple(p, 1, 1, out));
            return p_expect_op(p, ")");
        }
        if (is_op(t, "[")) {
            NEW(l, N_LIST, t->line);
            size_t cap = 0;
            adv(p);
            while (!is_op(cur(p), "]")) {
                if (l->nkids) {
                    SS_CHECK(p_expect_op(p, ","));
                    if (is_op(cur(p), "]"))
                        break;
                }
                tn *e;
                SS_CHECK(p_expr(p, 1, &e));
                SS_CHECK(p_add(p, l, e, &cap));
            }
            adv(p);
            *out = l;
            return SS_OK;
        }
        if (is_op(t, "{")) {
            NEW(d, N_DICT, t->line);
            size_t cap = 0;
            adv(p);
            while (!is_op(cur(p), "}")) {
                if (d->nkids) {
                    SS_CHECK(p_expect_op(p, ","));
                    if (is_op(cur(p), "}"))
                        break;
                }
                tn *k, *v;
                SS_CHECK(p_expr(p, 1, &k));
                SS_CHECK(p_expect_op(p, ":"));
                SS_CHECK(p_expr(p, 1, &v));
                SS_CHECK(p_add(p, d, k, &cap));
                SS_CHECK(p_add(p, d, v, &cap));
            }
            adv(p);
            *out = d;
            return SS_OK;
        }
        break;
    default:
        break;
    }
    return p_unexpected(p, "an expression");
}

static ss_status p_unary(tp *p, int with_filter, tn **out)
{
    SS_CHECK(p_enter(p));
    const tm_token *t = cur(p);
    if (is_op(t, "-") || is_op(t, "+")) {
        NEW(u, is_op(t, "-") ? N_NEG : N_POS, t->line);
        adv(p);
        SS_CHECK(p_unary(p, 0, &u->a));
        *out = u;
    } else {
        SS_CHECK(p_primary(p, out));
    }
    SS_CHECK(p_postfix(p, out));
    if (with_filter)
        SS_CHECK(p_filter_expr(p, out));
    p->depth--;
    return SS_OK;
}

static ss_status p_binop(tp *p, tn **left, int op, tn *right, int line)
{
    NEW(b, N_BINOP, line);
    b->op = op;
    b->a = *left;
    b->b = right;
    *left = b;
    return SS_OK;
}

static ss_status p_pow(tp *p, tn **out)
{
    SS_CHECK(p_unary(p, 1, out));
    while (is_op(cur(p), "**")) {
        int line = cur(p)->line;
        adv(p);
        tn *r;
        SS_CHECK(p_unary(p, 1, &r));
        SS_CHECK(p_binop(p, out, OP_POW, r, line));
    }
    return SS_OK;
}

static ss_status p_math2(tp *p, tn **out)
{
    SS_CHECK(p_pow(p, out));
    for (;;) {
        const tm_token *t = cur(p);
        int op = is_op(t, "*")    ? OP_MUL
                 : is_op(t, "/")  ? OP_DIV
                 : is_op(t, "//") ? OP_FLOORDIV
                 : is_op(t, "%")  ? OP_MOD
                                  : -1;
        if (op < 0)
            return SS_OK;
        adv(p);
        tn *r;
        SS_CHECK(p_pow(p, &r));
        SS_CHECK(p_binop(p, out, op, r, t->line));
    }
}

static ss_status p_concat(tp *p, tn **out)
{
    SS_CHECK(p_math2(p, out));
    while (is_op(cur(p), "~")) {
        int line = cur(p)->line;
        adv(p);
        tn *r;
        SS_CHECK(p_math2(p, &r));
        SS_CHECK(p_binop(p, out, OP_CONCAT, r, line));
    }
    return SS_OK;
}

static ss_status p_math1(tp *p, tn **out)
{
    SS_CHECK(p_concat(p, out));
    for (;;) {
        const tm_token *t = cur(p);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : -1;
        if (op < 0)
            return SS_OK;
        adv(p);
        tn *r;
        SS_CHECK(p_concat(p, &r));
        SS_CHECK(p_binop(p, out, op, r, t->line));
    }
}

static ss_status p_compare(tp *p, tn **out)
{
    tn *first;
    SS_CHECK(p_math1(p, &first));
    tn *cmp = NULL;
    size_t cap = 0;
    for (;;) {
        const tm_token *t = cur(p);
        int op = -1;
        if (is_op(t, "=="))
            op = OP_EQ;
        else if (is_op(t, "!="))
            op = OP_NE;
        else if (is_op(t, "<"))
            op = OP_LT;
        else if (is_op(t, "<="))
            op = OP_LE;
        else if (is_op(t, ">"))
            op = OP_GT;
        else if (is_op(t, ">="))
            op = OP_GE;
        else if (is_name(t, "in"))
            op = OP_IN;
        else if (is_name(t, "not") && is_name(peek(p, 1), "in"))
            op = OP_NOTIN;
        if (op < 0)
            break;
        adv(p);
        if (op == OP_NOTIN)
            adv(p);
        if (!cmp) {
            cmp = p_node(p, N_COMPARE, t->line);
            if (!cmp)
                return p_nomem(p);
            cmp->a = first;
        }
        NEW(operand, N_PARAM, t->line);
        operand->op = op;
        SS_CHECK(p_math1(p, &operand->a));
        SS_CHECK(p_add(p, cmp, operand, &cap));
    }
    *out = cmp ? cmp : first;
    return SS_OK;
}

static ss_status p_not(tp *p, tn **out)
{
    if (is_name(cur(p), "not")) {
        SS_CHECK(p_enter(p));
        NEW(nt, N_NOT, cur(p)->line);
        adv(p);
        SS_CHECK(p_not(p, &nt->a));
        *out = nt;
        p->depth--;
        return SS_OK;
    }
    return p_compare(p, out);
}

static ss_status p_and(tp *p, tn **out)
{
    SS_CHECK(p_not(p, out));
    while (is_name(cur(p), "and")) {
        NEW(a, N_AND, cur(p)->line);
        adv(p);
        a->a = *out;
        SS_CHECK(p_not(p, &a->b));
        *out = a;
    }
    return SS_OK;
}

static ss_status p_or(tp *p, tn **out)
{
    SS_CHECK(p_and(p, out));
    while (is_name(cur(p), "or")) {
        NEW(o, N_OR, cur(p)->line);
        adv(p);
        o->a = *out;
        SS_CHECK(p_and(p, &o->b));
        *out = o;
    }
    return SS_OK;
}

static ss_status p_expr(tp *p, int with_cond, tn **out)
{
    SS_CHECK(p_enter(p));
    SS_CHECK(p_or(p, out));
    while (with_cond && is_name(cur(p), "if")) {
        NEW(c, N_COND, cur(p)->line);
        adv(p);
        c->b = *out; /* value when true */
        SS_CHECK(p_or(p, &c->a));
        if (is_name(cur(p), "else")) {
            adv(p);
            SS_CHECK(p_expr(p, 1, &c->c));
        }
        *out = c;
    }
    p->depth--;
    return SS_OK;
}

/* expr or expr, expr, ... (a tuple); explicit_parens allows a one-element tuple "(a,)". */
static ss_status p_tuple(tp *p, int with_cond, int explicit_parens, tn **out)
{
    int line = cur(p)->line;
    tn *first;
    SS_CHECK(p_expr(p, with_cond, &first));
    if (!is_op(cur(p), ","))
        return (*out = first, SS_OK);
    NEW(tu, N_TUPLE, line);
    size_t cap = 0;
    SS_CHECK(p_add(p, tu, first, &cap));
    while (is_op(cur(p), ",")) {
        adv(p);
        const tm_token *t = cur(p);
        if (t->kind == TK_VAR_END || t->kind == TK_BLOCK_END || is_op(t, ")") || is_name(t, "in") || is_name(t, "if") ||
            t->kind == TK_EOF)
            break;
        tn *e;
        SS_CHECK(p_expr(p, with_cond, &e));
        SS_CHECK(p_add(p, tu, e, &cap));
    }
    (void)explicit_parens;
    *out = tu;
    return SS_OK;
}

/* ---------------------------------------------------------------- statements */
static ss_status p_body(tp *p, const char *const *ends, tn **out);

static ss_status p_block_end(tp *p)
{
    if (cur(p)->kind != TK_BLOCK_END)
        return p_unexpected(p, "end of statement block");
    adv(p);
    return SS_OK;
}

/* Assignment target: name, name.attr, or names separated by commas. */
static ss_status p_target(tp *p, int allow_attr, tn **out)
{
    int line = cur(p)->line;
    tn *first = NULL;
    size_t cap = 0;
    tn *tu = NULL;
    for (;;) {
        int paren = 0;
        if (is_op(cur(p), "(")) {
            paren = 1;
            adv(p);
        }
        const tm_token *t = cur(p);
        if (t->kind != TK_NAME)
            return p_unexpected(p, "a name to assign to");
        NEW(nm, N_NAME, t->line);
        nm->s = t->s;
        nm->n = t->n;
        adv(p);
        tn *target = nm;
        if (allow_attr && !tu && is_op(cur(p), ".")) {
            adv(p);
            if (cur(p)->kind != TK_NAME)
                return p_unexpected(p, "attribute name");
            NEW(at, N_ATTR, cur(p)->line);
            at->a = nm;
            at->s = cur(p)->s;
            at->n = cur(p)->n;
            adv(p);
            target = at;
        }
        if (paren)
            SS_CHECK(p_expect_op(p, ")"));
        if (!first && !is_op(cur(p), ",")) {
            *out = target;
            return SS_OK;
        }
        if (target->kind != N_NAME)
            return p_fail(p, SS_ERR_UNSUPPORTED, "attribute targets cannot be unpacked%s%s", "", "");
        if (!tu) {
            tu = p_node(p, N_TUPLE, line);
            if (!tu)
                return p_nomem(p);
        }
        SS_CHECK(p_add(p, tu, target, &cap));
        first = target;
        if (!is_op(cur(p), ","))
            break;
        adv(p);
    }
    *out = tu;
    return SS_OK;
}

static ss_status p_if(tp *p, int line, tn **out)
{
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    NEW(nd, N_IF, line);
    SS_CHECK(p_expr(p, 1, &nd->a));
    SS_CHECK(p_block_end(p));
    SS_CHECK(p_body(p, ends, &nd->b));
    *out = nd;
    /* cur is the name of the end tag */
    if (is_name(cur(p), "elif")) {
        int l2 = cur(p)->line;
        adv(p);
        return p_if(p, l2, &nd->c);
    }
    if (is_name(cur(p), "else")) {
        static const char *const ends2[] = {"endif", NULL};
        adv(p);
        SS_CHECK(p_block_end(p));
        SS_CHECK(p_body(p, ends2, &nd->c));
    }
    adv(p); /* endif */
    return p_block_end(p);
}

static ss_status p_for(tp *p, int line, tn **out)
{
    static const char *const ends[] = {"else", "endfor", NULL};
    static const char *const ends2[] = {"endfor", NULL};
    NEW(nd, N_FOR, line);
    SS_CHECK(p_target(p, 0, &nd->a));
    if (!is_name(cur(p), "in"))
        return p_unexpected(p, "'in'");
    adv(p);
    SS_CHECK(p_tuple(p, 0, 0, &nd->b));
    if (is_name(cur(p), "if")) {
        adv(p);
        SS_CHECK(p_expr(p, 1, &nd->e));
    }
    if (is_name(cur(p), "recursive"))
        return p_fail(p, SS_ERR_UNSUPPORTED, "recursive for loops are not supported%s%s", "", "");
    SS_CHECK(p_block_end(p));
    p->loops++;
    SS_CHECK(p_body(p, ends, &nd->c));
    p->loops--;
    if (is_name(cur(p), "else")) {
        adv(p);
        SS_CHECK(p_block_end(p));
        SS_CHECK(p_body(p, ends2, &nd->d));
    }
    adv(p);
    *out = nd;
    return p_block_end(p);
}

static ss_status p_set(tp *p, int line, tn **out)
{
    tn *target;
    SS_CHECK(p_target(p, 1, &target));
    if (is_op(cur(p), "=")) {
        adv(p);
        NEW(nd, N_SET, line);
        nd->a = target;
        SS_CHECK(p_tuple(p, 1, 0, &nd->b));
        *out = nd;
        return p_block_end(p);
    }
    if (is_op(cur(p), "|"))
        return p_fail(p, SS_ERR_UNSUPPORTED, "filtered block set is not supported%s%s", "", "");
    static const char *const ends[] = {"endset", NULL};
    NEW(nd, N_SET_BLOCK, line);
    nd->a = target;
    SS_CHECK(p_block_end(p));
    SS_CHECK(p_body(p, ends, &nd->b));
    adv(p);
    *out = nd;
    return p_block_end(p);
}

static ss_status p_macro(tp *p, int line, tn **out)
{
    static const char *const ends[] = {"endmacro", NULL};
    NEW(nd, N_MACRO, line);
    if (cur(p)->kind != TK_NAME)
        return p_unexpected(p, "macro name");
    nd->s = cur(p)->s;
    nd->n = cur(p)->n;
    adv(p);
    SS_CHECK(p_expect_op(p, "("));
    size_t cap = 0;
    int seen_default = 0;
    while (!is_op(cur(p), ")")) {
        if (nd->nkids)
            SS_CHECK(p_expect_op(p, ","));
        if (cur(p)->kind != TK_NAME)
            return p_unexpected(p, "parameter name");
        NEW(pa, N_PARAM, cur(p)->line);
        pa->s = cur(p)->s;
        pa->n = cur(p)->n;
        adv(p);
        if (is_op(cur(p), "=")) {
            adv(p);
            SS_CHECK(p_expr(p, 1, &pa->a));
            seen_default = 1;
        } else if (seen_default) {
            return p_fail(p, SS_ERR_FORMAT, "non-default argument follows default argument%s%s", "", "");
        }
        SS_CHECK(p_add(p, nd, pa, &cap));
    }
    adv(p);
    SS_CHECK(p_block_end(p));
    int loops = p->loops;
    p->loops = 0;
    SS_CHECK(p_body(p, ends, &nd->b));
    p->loops = loops;
    adv(p);
    if (cur(p)->kind == TK_NAME) /* {% endmacro name %} */
        adv(p);
    *out = nd;
    return p_block_end(p);
}

static ss_status p_filter_block(tp *p, int line, tn **out)
{
    static const char *const ends[] = {"endfilter", NULL};
    NEW(nd, N_FILTER_BLOCK, line);
    const tm_token *nm = cur(p);
    if (nm->kind != TK_NAME)
        return p_unexpected(p, "filter name");
    nd->op = tm_filter_id(nm->s, nm->n);
    if (nd->op < 0)
        return p_fail(p, SS_ERR_UNSUPPORTED, "no filter named '%s'%s", nm->s, "");
    nd->s = nm->s;
    adv(p);
    if (is_op(cur(p), "("))
        SS_CHECK(p_call_args(p, nd));
    SS_CHECK(p_block_end(p));
    SS_CHECK(p_body(p, ends, &nd->a));
    adv(p);
    *out = nd;
    return p_block_end(p);
}

static ss_status p_statement(tp *p, tn **out)
{
    const tm_token *t = cur(p);
    int line = t->line;
    if (t->kind != TK_NAME)
        return p_unexpected(p, "a statement name");
    SS_CHECK(p_enter(p));
    adv(p);
    ss_status st;
    if (is_name(t, "if")) {
        st = p_if(p, line, out);
    } else if (is_name(t, "for")) {
        st = p_for(p, line, out);
    } else if (is_name(t, "set")) {
        st = p_set(p, line, out);
    } else if (is_name(t, "macro")) {
        st = p_macro(p, line, out);
    } else if (is_name(t, "filter")) {
        st = p_filter_block(p, line, out);
    } else if (is_name(t, "break") || is_name(t, "continue")) {
        if (p->loops == 0)
            return ss_err_set(p->err, SS_ERR_FORMAT, "%s:%d: '%.*s' outside of a for loop", p->name, line, (int)t->n,
                              t->s);
        tn *nd = p_node(p, is_name(t, "break") ? N_BREAK : N_CONTINUE, line);
        if (!nd)
            return p_nomem(p);
        *out = nd;
        st = p_block_end(p);
    } else if (is_name(t, "generation")) { /* transformers' AssistantTracker: renders its body */
        static const char *const ends[] = {"endgeneration", NULL};
        st = p_block_end(p);
        if (st == SS_OK)
            st = p_body(p, ends, out);
        if (st == SS_OK) {
            adv(p);
            st = p_block_end(p);
        }
    } else {
        static const char *const known[] = {"include", "extends", "import",     "from",  "block",     "call",
                                            "with",    "do",      "autoescape", "trans", "pluralize", NULL};
        for (int i = 0; known[i]; i++)
            if (is_name(t, known[i]))
                return ss_err_set(p->err, SS_ERR_UNSUPPORTED, "%s:%d: the '{%% %s %%}' tag is not supported", p->name,
                                  line, known[i]);
        return ss_err_set(p->err, SS_ERR_FORMAT, "%s:%d: unknown tag '%.*s'", p->name, line,
                          (int)(t->n > 40 ? 40 : t->n), t->s);
    }
    p->depth--;
    return st;
}

/* Parses until EOF (ends == NULL) or a block whose first name is in ends; leaves cur at that name. */
static ss_status p_body(tp *p, const char *const *ends, tn **out)
{
    SS_CHECK(p_enter(p));
    NEW(body, N_BODY, cur(p)->line);
    size_t cap = 0;
    int open_line = cur(p)->line;
    for (;;) {
        const tm_token *t = cur(p);
        if (t->kind == TK_EOF) {
            if (ends) {
                char want[64];
                snprintf(want, sizeof(want), "'%s'", ends[0]);
                for (int i = 0; ends[i]; i++)
                    if (strncmp(ends[i], "end", 3) == 0)
                        snprintf(want, sizeof(want), "'%s'", ends[i]);
                return ss_err_set(p->err, SS_ERR_FORMAT,
                                  "%s:%d: unexpected end of template, expected %s (block opened on line %d)", p->name,
                                  t->line, want, open_line);
            }
            break;
        }
        if (t->kind == TK_DATA) {
            NEW(d, N_DATA, t->line);
            d->s = t->s;
            d->n = t->n;
            SS_CHECK(p_add(p, body, d, &cap));
            adv(p);
        } else if (t->kind == TK_VAR_BEGIN) {
            NEW(o, N_OUTPUT, t->line);
            adv(p);
            SS_CHECK(p_tuple(p, 1, 0, &o->a));
            if (cur(p)->kind != TK_VAR_END)
                return p_unexpected(p, "end of print statement");
            adv(p);
            SS_CHECK(p_add(p, body, o, &cap));
        } else if (t->kind == TK_BLOCK_BEGIN) {
            const tm_token *nm = peek(p, 1);
            if (ends && nm->kind == TK_NAME) {
                for (int i = 0; ends[i]; i++)
                    if (is_name(nm, ends[i])) {
                        adv(p);
                        *out = body;
                        p->depth--;
                        return SS_OK;
                    }
            }
            if (nm->kind == TK_NAME && (strncmp(nm->s, "end", 3) == 0 || is_name(nm, "elif") || is_name(nm, "else"))) {
                adv(p);
                return ss_err_set(p->err, SS_ERR_FORMAT, "%s:%d: unexpected '%.*s' tag%s", p->name, nm->line,
                                  (int)(nm->n > 40 ? 40 : nm->n), nm->s, ends ? "" : " (no block is open)");
            }
            adv(p);
            tn *st;
            SS_CHECK(p_statement(p, &st));
            SS_CHECK(p_add(p, body, st, &cap));
        } else {
            return p_unexpected(p, "template data or a tag");
        }
    }
    *out = body;
    p->depth--;
    return SS_OK;
}

ss_status tm_parse(tm_arena *a, const tm_token *toks, size_t ntoks, const char *name, tn **root, ss_err *err)
{
    tp p = {.a = a, .t = toks, .n = ntoks, .name = name, .err = err};
    return p_body(&p, NULL, root);
}
