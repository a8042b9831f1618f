/* json_guide.c — JSON mode's byte-level recogniser. Written here because JSON libraries (cJSON, jansson)
 * parse whole documents; guided decoding must ask, byte by byte, whether a prefix can still become one. */
#include "serve/json_guide.h"

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
    J_STR_U,     /* inside \uXXXX (aux hex digits seen) */
    J_NUM_MINUS, /* after '-' */
    J_NUM_ZERO,  /* a leading 0 */
    J_NUM_INT,   /* integer digits */
    J_NUM_DOT,   /* after '.' */
    J_NUM_FRAC,  /* fraction digits */
    J_NUM_E,     /* after 'e' / 'E' */
    J_NUM_ESIGN, /* after the exponent's sign */
    J_NUM_EXP,   /* exponent digits */
    J_LIT,       /* inside true / false / null */
    J_DONE,      /* the top-level object is closed */
};

static const char *const lit_words[3] = {"true", "false", "null"};
static const uint8_t lit_lens[3] = {4, 5, 4};

void ss_json_init(ss_json_state *s)
{
    *s = (ss_json_state){0};
    s->mode = J_START;
}

int ss_json_done(const ss_json_state *s)
{
    return s->mode == J_DONE;
}

int ss_json_in_string(const ss_json_state *s)
{
    return s->mode == J_STR || s->mode == J_STR_ESC || s->mode == J_STR_U;
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

/* A value has ended: inside a container comes J_AFTER; the top-level object's end is J_DONE. */
static void value_end(ss_json_state *s)
{
    s->mode = s->depth == 0 ? J_DONE : J_AFTER;
}

static int open_container(ss_json_state *s, int object)
{
    if (s->depth >= SS_JSON_MAX_DEPTH)
        return 0;
    if (object)
        s->stack |= (uint64_t)1 << s->depth;
    else
        s->stack &= ~((uint64_t)1 << s->depth);
    s->depth++;
    s->mode = object ? J_OBJ_FIRST : J_ARR_FIRST;
    return 1;
}

static int close_container(ss_json_state *s, int object)
{
    if (s->depth == 0 || top_is_object(s) != object)
        return 0;
    s->depth--;
    value_end(s);
    return 1;
}

/* The first byte of a value (after ':' or in an array). */
static int value_start(ss_json_state *s, uint8_t c)
{
    switch (c) {
    case '{':
        return open_container(s, 1);
    case '[':
        return open_container(s, 0);
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
        if (s->key) {
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

int ss_json_push(ss_json_state *s, uint8_t c)
{
    if (s->mode >= J_NUM_MINUS && s->mode <= J_NUM_EXP) {
        if (number_byte(s, c))
            return 1;
        if (!number_may_end(s->mode))
            return 0;
        value_end(s); /* numbers only appear inside containers: J_AFTER takes c */
    }
    int structural = s->mode <= J_AFTER || s->mode == J_DONE;
    if (structural && is_ws(c)) {
        if (s->mode == J_DONE || s->ws >= SS_JSON_MAX_WS)
            return 0;
        s->ws++;
        return 1;
    }
    if (structural)
        s->ws = 0;
    switch (s->mode) {
    case J_START:
        return c == '{' && open_container(s, 1);
    case J_OBJ_FIRST:
        if (c == '}')
            return close_container(s, 1); /* else a key, as after ',' */
        /* fall through */
    case J_OBJ_KEY:
        if (c != '"')
            return 0;
        s->mode = J_STR;
        s->key = 1;
        s->need = 0;
        return 1;
    case J_COLON:
        if (c != ':')
            return 0;
        s->mode = J_VALUE;
        return 1;
    case J_ARR_FIRST:
        if (c == ']')
            return close_container(s, 0);
        return value_start(s, c);
    case J_VALUE:
        return value_start(s, c);
    case J_AFTER:
        if (c == ',') {
            s->mode = top_is_object(s) ? J_OBJ_KEY : J_VALUE;
            return 1;
        }
        if (c == '}' || c == ']')
            return close_container(s, c == '}');
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
        if (!is_hex(c))
            return 0;
        if (++s->aux == 4)
            s->mode = J_STR;
        return 1;
    case J_LIT:
        if ((uint8_t)lit_words[s->lit][s->aux] != c)
            return 0;
        if (++s->aux == lit_lens[s->lit])
            value_end(s);
        return 1;
    default: /* J_DONE */
        return 0;
    }
}

int ss_json_push_bytes(ss_json_state *s, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!ss_json_push(s, p[i]))
            return 0;
    return 1;
}
