/* json_guide.c — JSON mode's byte-level recogniser, free or following a schema's nodes. Written here because JSON
 * libraries (cJSON, jansson) parse whole documents; guided decoding must ask, byte by byte, whether a prefix can
 * still become one. */
#include "serve/json_guide.h"

#include <string.h>

enum {
    J_START = 0, /* before the top-level object: whitespace, '{' */
    J_OBJ_FIRST, /* after '{': whitespace, '"' (a key), '}' */
    J_OBJ_KEY,   /* after ',' in an object: whitespace, '"' */
    J_COLON,     /* after a key: whitespace, ':' */
    J_VALUE,     /* after ':' or ',' in an array: whitespace, a value */
    J_ARR_FIRST, /* after '[': whitespace, a value, ']' */
    J_AFTER,     /* after a value inside a container: whitespace, ',', the container's closing bracket */
    J_STR,       /* inside a string */
    J_STR_ESC,   /* after '\' */
    J_STR_U,     /* inside \uXXXX (aux: the U_* flags and the hex digits seen) */
    J_STR_LOW,   /* after a high surrogate's \uD8XX..\uDBXX: the '\' of its low surrogate */
    J_STR_LOW_U, /* the 'u' of that low surrogate */
    J_NUM_MINUS, /* after '-' */
    J_NUM_ZERO,  /* a leading 0 */
    J_NUM_INT,   /* integer digits */
    J_NUM_DOT,   /* after '.' */
    J_NUM_FRAC,  /* fraction digits */
    J_NUM_E,     /* after 'e' / 'E' */
    J_NUM_ESIGN, /* after the exponent's sign */
    J_NUM_EXP,   /* exponent digits */
    J_LIT,       /* inside true / false / null */
    J_SET,       /* inside a key or an enum value of a schema: matching its set of literals */
    J_DONE,      /* the top-level object is closed */
};

static const char *const lit_words[3] = {"true", "false", "null"};
static const uint8_t lit_lens[3] = {4, 5, 4};

void ss_json_init(ss_json_state *s, const ss_json_schema *sc)
{
    memset(s, 0, sizeof *s);
    s->mode = J_START;
    s->value = (uint16_t)ss_json_schema_root(sc);
}

int ss_json_done(const ss_json_state *s)
{
    return s->mode == J_DONE;
}

int ss_json_in_string(const ss_json_state *s)
{
    return s->mode == J_STR || s->mode == J_STR_ESC || s->mode == J_STR_U || s->mode == J_STR_LOW ||
           s->mode == J_STR_LOW_U;
}

int ss_json_between_chars(const ss_json_state *s)
{
    return s->mode == J_STR && s->need == 0;
}

static int is_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(uint8_t c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int top_is_object(const ss_json_state *s)
{
    return (int)((s->stack >> (s->depth - 1)) & 1u);
}

/* The innermost container follows a schema node (its frames are the outermost sdepth). */
static int in_schema_frame(const ss_json_state *s)
{
    return s->depth > 0 && s->depth <= s->sdepth;
}

static const ss_json_node *top_node(const ss_json_schema *sc, const ss_json_state *s)
{
    return ss_json_schema_node(sc, s->node[s->sdepth - 1]);
}

/* A value has ended: inside a container comes J_AFTER; the top-level object's end is J_DONE. */
static void value_end(ss_json_state *s)
{
    s->mode = s->depth == 0 ? J_DONE : J_AFTER;
}

/* Opens a container; with node >= 0 it follows that schema node (only inside schema frames: free JSON holds
 * only free JSON). */
static int open_container(const ss_json_schema *sc, ss_json_state *s, int object, int32_t node)
{
    if (s->depth >= SS_JSON_MAX_DEPTH ||
        (node >= 0 && s->sdepth + ss_json_schema_node(sc, node)->min_depth > SS_JSON_SCHEMA_MAX_DEPTH))
        return 0; /* (a schema container opens only where all it must hold still fits) */
    if (object)
        s->stack |= (uint64_t)1 << s->depth;
    else
        s->stack &= ~((uint64_t)1 << s->depth);
    s->depth++;
    if (node >= 0) {
        s->node[s->sdepth] = (uint16_t)node;
        s->pidx[s->sdepth] = 0;
        s->sdepth++;
    }
    s->mode = object ? J_OBJ_FIRST : J_ARR_FIRST;
    return 1;
}

/* Closes the innermost container: the right bracket, and for a schema's object no required property left. */
static int close_container(const ss_json_schema *sc, ss_json_state *s, int object)
{
    if (s->depth == 0 || top_is_object(s) != object)
        return 0;
    if (in_schema_frame(s)) {
        const ss_json_node *n = top_node(sc, s);
        if (object && n->n_props > 0 && n->next_req[s->pidx[s->sdepth - 1]] < n->n_props)
            return 0; /* a required property is still due */
        s->sdepth--;
    }
    s->depth--;
    value_end(s);
    return 1;
}

/* The first byte of a free value (any JSON). */
static int free_value_start(const ss_json_schema *sc, ss_json_state *s, uint8_t c)
{
    s->int_only = 0;
    switch (c) {
    case '{':
        return open_container(sc, s, 1, -1);
    case '[':
        return open_container(sc, s, 0, -1);
    case '"':
        s->mode = J_STR;
        s->key = 0;
        s->need = 0;
        return 1;
    case '-':
        s->mode = J_NUM_MINUS;
        return 1;
    case '0':
        s->mode = J_NUM_ZERO;
        return 1;
    case 't':
    case 'f':
    case 'n':
        s->mode = J_LIT;
        s->lit = c == 't' ? 0 : c == 'f' ? 1 : 2;
        s->aux = 1;
        return 1;
    default:
        if (c >= '1' && c <= '9') {
            s->mode = J_NUM_INT;
            return 1;
        }
        return 0;
    }
}

static int set_byte(const ss_json_schema *sc, ss_json_state *s, uint8_t c);

/* Starts matching a key or enum literal of set id with byte c. */
static int set_start(const ss_json_schema *sc, ss_json_state *s, int32_t id, int key, uint8_t c)
{
    const ss_json_set *set = ss_json_schema_set(sc, id);
    s->set = (uint16_t)id;
    s->set_lo = 0;
    s->set_hi = (uint16_t)(set->n - 1);
    s->set_pos = 0;
    s->key = (uint8_t)key;
    s->mode = J_SET;
    return set_byte(sc, s, c);
}

/* The first byte of a value of schema node id (a union picks its branch by the byte's class). */
static int value_start(const ss_json_schema *sc, ss_json_state *s, int32_t id, uint8_t c)
{
    for (int hops = 0; hops < 8; hops++) {
        const ss_json_node *n = ss_json_schema_node(sc, id);
        s->int_only = 0;
        switch (n->kind) {
        case SS_JK_ANY:
            return free_value_start(sc, s, c);
        case SS_JK_OBJECT:
            return c == '{' && open_container(sc, s, 1, n->free ? -1 : id);
        case SS_JK_ARRAY:
            return c == '[' && open_container(sc, s, 0, id);
        case SS_JK_STRING:
            return c == '"' && free_value_start(sc, s, c);
        case SS_JK_NUMBER:
        case SS_JK_INTEGER:
            if (!(c == '-' || is_digit(c)))
                return 0;
            free_value_start(sc, s, c);
            s->int_only = n->kind == SS_JK_INTEGER;
            return 1;
        case SS_JK_BOOLEAN:
            return (c == 't' || c == 'f') && free_value_start(sc, s, c);
        case SS_JK_NULL:
            return c == 'n' && free_value_start(sc, s, c);
        case SS_JK_ENUM:
            return set_start(sc, s, n->set, 0, c);
        case SS_JK_UNION: {
            int k = ss_json_first_class(c);
            if (k < 0 || n->branch[k] < 0)
                return 0;
            id = n->branch[k];
            continue;
        }
        default:
            return 0;
        }
    }
    return 0; /* unions of unions deeper than a compiled schema makes */
}

/* The node of the next value inside the innermost container (after '[' or an array's ','). */
static int32_t items_node(const ss_json_schema *sc, const ss_json_state *s)
{
    return in_schema_frame(s) ? top_node(sc, s)->items : SS_JSON_NODE_ANY;
}

/* Whether the innermost object (a schema's, with properties) may take property j next: one of those from the next
 * to the first required one, whose value fits the schema depth left. */
static int prop_allowed(const ss_json_schema *sc, const ss_json_state *s, int32_t j)
{
    const ss_json_node *n = top_node(sc, s);
    int32_t i = s->pidx[s->sdepth - 1];
    int32_t last = n->next_req[i] < n->n_props ? n->next_req[i] : n->n_props - 1;
    return j >= i && j <= last &&
           s->sdepth + ss_json_schema_node(sc, n->prop[j])->min_depth <= SS_JSON_SCHEMA_MAX_DEPTH;
}

/* One byte of a key or enum literal: the literals [set_lo, set_hi] share set_pos bytes, the shortest first (a key
 * set holds every property of its object: only those prop_allowed count). A byte that continues none ends a
 * literal that is complete (and is then read by what follows it). */
static int set_byte(const ss_json_schema *sc, ss_json_state *s, uint8_t c)
{
    const ss_json_set *set = ss_json_schema_set(sc, s->set);
    const ss_json_lit *l = set->lits;
    const uint16_t pos = s->set_pos;
    int32_t lo = s->set_lo, hi = s->set_hi;
    const int complete = l[lo].len == pos;
    int32_t a = lo + complete, b = hi; /* the others, ordered by their byte pos: the first >= c */
    while (a < b) {
        int32_t m = a + (b - a) / 2;
        if (l[m].p[pos] < c)
            a = m + 1;
        else
            b = m;
    }
    if (a <= hi && l[a].len > pos && l[a].p[pos] == c) {
        int32_t e = a, f = hi; /* the last == c */
        while (e < f) {
            int32_t m = e + (f - e + 1) / 2;
            if (l[m].p[pos] > c)
                f = m - 1;
            else
                e = m;
        }
        if (s->key) {
            int32_t k = a;
            while (k <= e && !prop_allowed(sc, s, l[k].prop))
                k++;
            if (k > e)
                return 0;
        }
        s->set_lo = (uint16_t)a;
        s->set_hi = (uint16_t)e;
        s->set_pos++;
        return 1;
    }
    if (!complete)
        return 0;
    if (s->key) {
        const ss_json_node *n = top_node(sc, s);
        int32_t prop = l[lo].prop;
        s->pidx[s->sdepth - 1] = (uint8_t)(prop + 1); /* <= SS_JSON_SCHEMA_MAX_PROPS */
        s->value = (uint16_t)n->prop[prop];
        s->key = 0;
        s->mode = J_COLON;
    } else {
        value_end(s);
    }
    return ss_json_push(sc, s, c);
}

/* A raw byte inside a string: printable ASCII but '"' and '\', or well-formed UTF-8 (no overlong forms,
 * no surrogates, nothing past U+10FFFF), so that the text is always valid UTF-8. */
static int string_byte(ss_json_state *s, uint8_t c)
{
    if (s->need > 0) {
        if (c < s->lo || c > s->hi)
            return 0;
        s->need--;
        s->lo = 0x80;
        s->hi = 0xBF;
        return 1;
    }
    if (c == '"') {
        if (s->key) { /* a free key: its value's node was set when it began */
            s->mode = J_COLON;
            s->key = 0;
        } else {
            value_end(s);
        }
        return 1;
    }
    if (c == '\\') {
        s->mode = J_STR_ESC;
        return 1;
    }
    if (c < 0x20)
        return 0; /* control characters must be escaped */
    if (c < 0x80)
        return 1;
    s->lo = 0x80;
    s->hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        s->need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        s->need = 2;
        if (c == 0xE0)
            s->lo = 0xA0; /* no overlong 3-byte forms */
        else if (c == 0xED)
            s->hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        s->need = 3;
        if (c == 0xF0)
            s->lo = 0x90;
        else if (c == 0xF4)
            s->hi = 0x8F; /* nothing past U+10FFFF */
    } else {
        return 0; /* a continuation byte alone, C0/C1 (overlong), F5..FF */
    }
    return 1;
}

/* One whitespace byte outside strings (SS_JSON_MAX_INDENT's rule). */
static int ws_byte(ss_json_state *s, uint8_t c)
{
    if (s->ws == 0 && (c == ' ' || c == '\r' || c == '\n')) {
        s->ws = c == ' ' ? 1 : c == '\r' ? 2 : 3;
        return 1;
    }
    if (s->ws == 2 && c == '\n') {
        s->ws = 3;
        return 1;
    }
    if (s->ws >= 3 && (c == ' ' || c == '\t') && s->ws - 3 < SS_JSON_MAX_INDENT) {
        s->ws++;
        return 1;
    }
    return 0;
}

/* \uXXXX escapes name UTF-16 units: a high surrogate (D800-DBFF) must be followed by a low one (DC00-DFFF) as
 * the next escape, and a low one may come only there, as strict parsers (cJSON, Python's json) require. Told from
 * the first two hex digits, so that no prefix is taken that no digits can finish. aux: the digits seen (low 3
 * bits) and these flags. */
enum {
    U_D = 16,    /* the first digit was d / D */
    U_HIGH = 32, /* this escape is a high surrogate */
    U_LOW = 64,  /* this escape must be a low surrogate */
};

static int unicode_escape_byte(ss_json_state *s, uint8_t c)
{
    if (!is_hex(c))
        return 0;
    const int k = s->aux & 7;
    if (k == 0) {
        int d = c == 'd' || c == 'D';
        if ((s->aux & U_LOW) && !d)
            return 0;
        if (d)
            s->aux |= U_D;
    } else if (k == 1 && (s->aux & U_D)) {
        int low = (c >= 'c' && c <= 'f') || (c >= 'C' && c <= 'F');
        int high = (c >= '8' && c <= '9') || (c >= 'a' && c <= 'b') || (c >= 'A' && c <= 'B');
        if ((s->aux & U_LOW) ? !low : low)
            return 0; /* a low surrogate alone, or not one where it must be */
        if (high)
            s->aux |= U_HIGH;
    }
    s->aux = (uint8_t)((s->aux & ~7) | (k + 1));
    if (k + 1 == 4)
        s->mode = (s->aux & U_HIGH) ? J_STR_LOW : J_STR;
    return 1;
}

/* A number's mode that may end there (the byte that ends it belongs to what follows). */
static int number_may_end(uint8_t mode)
{
    return mode == J_NUM_ZERO || mode == J_NUM_INT || mode == J_NUM_FRAC || mode == J_NUM_EXP;
}

static int number_byte(ss_json_state *s, uint8_t c)
{
    switch (s->mode) {
    case J_NUM_MINUS:
        if (c == '0')
            s->mode = J_NUM_ZERO;
        else if (c >= '1' && c <= '9')
            s->mode = J_NUM_INT;
        else
            return 0;
        return 1;
    case J_NUM_ZERO:
    case J_NUM_INT:
        if (is_digit(c) && s->mode == J_NUM_INT)
            return 1;
        if (s->int_only)
            return 0; /* an integer has no fraction or exponent */
        if (c == '.') {
            s->mode = J_NUM_DOT;
            return 1;
        }
        if (c == 'e' || c == 'E') {
            s->mode = J_NUM_E;
            return 1;
        }
        return 0;
    case J_NUM_DOT:
        if (!is_digit(c))
            return 0;
        s->mode = J_NUM_FRAC;
        return 1;
    case J_NUM_FRAC:
        if (is_digit(c))
            return 1;
        if (c == 'e' || c == 'E') {
            s->mode = J_NUM_E;
            return 1;
        }
        return 0;
    case J_NUM_E:
        if (c == '+' || c == '-') {
            s->mode = J_NUM_ESIGN;
            return 1;
        } /* else a digit, as after a sign */
        /* fall through */
    case J_NUM_ESIGN:
        if (!is_digit(c))
            return 0;
        s->mode = J_NUM_EXP;
        return 1;
    case J_NUM_EXP:
        return is_digit(c);
    default:
        return 0;
    }
}

/* A key's first byte, '"': a schema's object matches its set of keys allowed here; a free object takes any. */
static int key_start(const ss_json_schema *sc, ss_json_state *s, uint8_t c)
{
    if (c != '"')
        return 0;
    s->value = SS_JSON_NODE_ANY;
    if (in_schema_frame(s)) {
        const ss_json_node *n = top_node(sc, s);
        if (n->n_props > 0)
            return set_start(sc, s, n->keys, 1, c);
        if (n->addl < 0 || s->sdepth + ss_json_schema_node(sc, n->addl)->min_depth > SS_JSON_SCHEMA_MAX_DEPTH)
            return 0; /* "additionalProperties": false and no properties, or values that cannot fit: {} */
        s->value = (uint16_t)n->addl; /* a dictionary: any key, the values of one schema */
    }
    s->mode = J_STR;
    s->key = 1;
    s->need = 0;
    return 1;
}

/* ',' after a value: in an object, only while properties remain (a schema's); in an array, the next item. */
static int comma(const ss_json_schema *sc, ss_json_state *s)
{
    if (!top_is_object(s)) {
        s->value = (uint16_t)items_node(sc, s);
        s->mode = J_VALUE;
        return 1;
    }
    if (in_schema_frame(s) && top_node(sc, s)->n_props > 0) { /* only if some property may still come */
        int32_t j = s->pidx[s->sdepth - 1], n = top_node(sc, s)->n_props;
        while (j < n && !prop_allowed(sc, s, j))
            j++;
        if (j == n)
            return 0;
    }
    s->mode = J_OBJ_KEY;
    return 1;
}

int ss_json_push(const ss_json_schema *sc, ss_json_state *s, uint8_t c)
{
    if (s->mode >= J_NUM_MINUS && s->mode <= J_NUM_EXP) {
        if (number_byte(s, c))
            return 1;
        if (!number_may_end(s->mode))
            return 0;
        value_end(s); /* numbers only appear inside containers: J_AFTER takes c */
    }
    int structural = s->mode <= J_AFTER || s->mode == J_DONE;
    if (structural && is_ws(c))
        return s->mode != J_DONE && ws_byte(s, c);
    if (structural)
        s->ws = 0;
    switch (s->mode) {
    case J_START:
        return value_start(sc, s, s->value, c);
    case J_OBJ_FIRST:
        if (c == '}')
            return close_container(sc, s, 1); /* else a key, as after ',' */
        /* fall through */
    case J_OBJ_KEY:
        return key_start(sc, s, c);
    case J_COLON:
        if (c != ':')
            return 0;
        s->mode = J_VALUE;
        return 1;
    case J_ARR_FIRST:
        if (c == ']')
            return close_container(sc, s, 0);
        return value_start(sc, s, items_node(sc, s), c);
    case J_VALUE:
        return value_start(sc, s, s->value, c);
    case J_AFTER:
        if (c == ',')
            return comma(sc, s);
        if (c == '}' || c == ']')
            return close_container(sc, s, c == '}');
        return 0;
    case J_STR:
        return string_byte(s, c);
    case J_STR_ESC:
        if (c == 'u') {
            s->mode = J_STR_U;
            s->aux = 0;
            return 1;
        }
        if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') {
            s->mode = J_STR;
            return 1;
        }
        return 0;
    case J_STR_U:
        return unicode_escape_byte(s, c);
    case J_STR_LOW:
        if (c != '\\')
            return 0;
        s->mode = J_STR_LOW_U;
        return 1;
    case J_STR_LOW_U:
        if (c != 'u')
            return 0;
        s->mode = J_STR_U;
        s->aux = U_LOW;
        return 1;
    case J_LIT:
        if ((uint8_t)lit_words[s->lit][s->aux] != c)
            return 0;
        if (++s->aux == lit_lens[s->lit])
            value_end(s);
        return 1;
    case J_SET:
        return set_byte(sc, s, c);
    default: /* J_DONE */
        return 0;
    }
}

int ss_json_push_bytes(const ss_json_schema *sc, ss_json_state *s, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!ss_json_push(sc, s, p[i]))
            return 0;
    return 1;
}
