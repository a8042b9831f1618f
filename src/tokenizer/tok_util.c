/* tok_util.c — the tokenizer's small containers (byte buffer, id vector, string table, string and
 * merge hash maps) and UTF-8 / Unicode-class helpers. */
#include <string.h>

#include <utf8proc.h>

#include "core/alloc.h"
#include "tokenizer/tok_internal.h"

size_t ss_tok_growth_limit(size_t n)
{
    return n < (SIZE_MAX / 4 - 4096) / SS_TOK_MAX_GROWTH ? n * SS_TOK_MAX_GROWTH + 4096 : SIZE_MAX / 4;
}

ss_status ss_tok_buf_reserve(ss_tok_buf *b, size_t extra)
{
    if (extra > SIZE_MAX / 4 - b->len || (b->limit && b->len + extra > b->limit))
        return SS_ERR_CAPACITY;
    size_t need = b->len + extra + 1; /* room for a terminating NUL */
    if (need <= b->cap)
        return SS_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = ss_realloc(b->p, cap);
    if (!p)
        return SS_ERR_NOMEM;
    b->p = p;
    b->cap = cap;
    return SS_OK;
}

ss_status ss_tok_buf_append(ss_tok_buf *b, const void *p, size_t n)
{
    SS_CHECK(ss_tok_buf_reserve(b, n));
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return SS_OK;
}

void ss_tok_buf_free(ss_tok_buf *b)
{
    ss_free(b->p);
    b->p = NULL;
    b->len = b->cap = 0; /* (limit kept) */
}

ss_status ss_tok_ids_push(ss_tok_ids *a, int32_t id)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = ss_realloc(a->v, cap * sizeof *v);
        if (!v)
            return SS_ERR_NOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return SS_OK;
}

/* ---- string table ---- */

ss_status ss_tok_strtab_init(ss_tok_strtab *t, size_t n)
{
    memset(t, 0, sizeof *t);
    t->off = ss_malloc((n ? n : 1) * sizeof *t->off);
    t->len = ss_calloc(n ? n : 1, sizeof *t->len);
    if (!t->off || !t->len) {
        ss_tok_strtab_free(t);
        return SS_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        t->off[i] = UINT64_MAX;
    t->n = n;
    return SS_OK;
}

ss_status ss_tok_strtab_set(ss_tok_strtab *t, size_t id, const char *s, size_t len)
{
    if (id >= t->n || len > UINT32_MAX)
        return SS_ERR_INTERNAL;
    if (t->arena_len + len + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 4096;
        while (cap < t->arena_len + len + 1)
            cap *= 2;
        char *p = ss_realloc(t->arena, cap);
        if (!p)
            return SS_ERR_NOMEM;
        t->arena = p;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, s, len);
    t->arena[t->arena_len + len] = '\0';
    t->off[id] = t->arena_len;
    t->len[id] = (uint32_t)len;
    t->arena_len += len + 1;
    return SS_OK;
}

void ss_tok_strtab_free(ss_tok_strtab *t)
{
    ss_free(t->arena);
    ss_free(t->off);
    ss_free(t->len);
    memset(t, 0, sizeof *t);
}

/* ---- string map ---- */

uint32_t ss_tok_hash(const char *s, size_t len)
{
    uint64_t h = 0x243F6A8885A308D3ull ^ (len * 0xFF51AFD7ED558CCDull);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
        s += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, len);
    h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 32;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    return (uint32_t)h;
}

ss_status ss_tok_strmap_build(ss_tok_strmap *m, const ss_tok_strtab *keys)
{
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < keys->n * 2 + 2)
        cap *= 2;
    m->slots = ss_calloc(cap, sizeof *m->slots);
    if (!m->slots)
        return SS_ERR_NOMEM;
    m->keys = keys;
    m->mask = cap - 1;
    for (size_t id = 0; id < keys->n; id++) {
        size_t len;
        const char *s = ss_tok_strtab_get(keys, id, &len);
        if (!s)
            continue;
        if (ss_tok_strmap_get(m, s, len) >= 0)
            continue; /* first one wins */
        uint32_t h = ss_tok_hash(s, len);
        size_t i = h & m->mask;
        while (m->slots[i])
            i = (i + 1) & m->mask;
        m->slots[i] = ((uint64_t)h << 32) | (uint64_t)(id + 1);
    }
    return SS_OK;
}

int32_t ss_tok_strmap_get(const ss_tok_strmap *m, const char *s, size_t len)
{
    uint32_t h = ss_tok_hash(s, len);
    size_t i = h & m->mask;
    for (;;) {
        uint64_t v = m->slots[i];
        if (!v)
            return -1;
        if ((uint32_t)(v >> 32) == h) {
            size_t id = (size_t)(uint32_t)v - 1;
            if (m->keys->len[id] == len && !memcmp(m->keys->arena + m->keys->off[id], s, len))
                return (int32_t)id;
        }
        i = (i + 1) & m->mask;
    }
}

void ss_tok_strmap_free(ss_tok_strmap *m)
{
    ss_free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ---- merge map ---- */

ss_status ss_tok_mergemap_init(ss_tok_mergemap *m, size_t n)
{
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < n * 2 + 2)
        cap *= 2;
    m->slots = ss_malloc(cap * sizeof *m->slots);
    if (!m->slots)
        return SS_ERR_NOMEM;
    for (size_t i = 0; i < cap; i++)
        m->slots[i].key = UINT64_MAX;
    m->mask = cap - 1;
    return SS_OK;
}

int ss_tok_mergemap_put(ss_tok_mergemap *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & m->mask;
    while (m->slots[i].key != UINT64_MAX) {
        if (m->slots[i].key == key)
            return 1;
        i = (i + 1) & m->mask;
    }
    m->slots[i].key = key;
    m->slots[i].rank = rank;
    m->slots[i].new_id = new_id;
    m->n++;
    return 0;
}

void ss_tok_mergemap_free(ss_tok_mergemap *m)
{
    ss_free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ---- UTF-8 ---- */

/* Expected length of a sequence starting with b and the valid range of its second byte. */
static size_t tok_utf8_lead(unsigned char b, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF)
        return 2;
    if (b == 0xE0) {
        *lo = 0xA0;
        return 3;
    }
    if (b == 0xED) {
        *hi = 0x9F;
        return 3;
    }
    if (b >= 0xE1 && b <= 0xEF)
        return 3;
    if (b == 0xF0) {
        *lo = 0x90;
        return 4;
    }
    if (b == 0xF4) {
        *hi = 0x8F;
        return 4;
    }
    if (b >= 0xF1 && b <= 0xF3)
        return 4;
    return 0;
}

/* Number of bytes of s[0..n) that form a valid (possibly incomplete) prefix of one character;
 * sets *complete when that prefix is a whole character. */
static size_t tok_utf8_prefix(const unsigned char *s, size_t n, int *complete)
{
    unsigned char lo, hi;
    *complete = 0;
    if (!n)
        return 0;
    size_t need = tok_utf8_lead(s[0], &lo, &hi);
    if (!need)
        return 0;
    size_t k = 1;
    while (k < need && k < n) {
        unsigned char c = s[k];
        if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF))
            break;
        k++;
    }
    *complete = k == need;
    return k;
}

size_t ss_tok_utf8_len(const unsigned char *s, size_t n)
{
    int complete;
    size_t k = tok_utf8_prefix(s, n, &complete);
    return complete ? k : 0;
}

uint32_t ss_tok_utf8_decode(const unsigned char *s, size_t clen)
{
    switch (clen) {
    case 1: return s[0];
    case 2: return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3: return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    default:
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
               (s[3] & 0x3F);
    }
}

size_t ss_tok_utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t ss_tok_utf8_validate(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = ss_tok_utf8_len(u + i, n - i);
        if (!k)
            return i;
        i += k;
    }
    return n;
}

ss_status ss_tok_utf8_lossy_append(ss_tok_buf *out, const char *s, size_t n)
{
    static const char repl[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* run: start of the pending valid stretch */
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int complete;
        size_t k = tok_utf8_prefix(u + i, n - i, &complete);
        if (complete) {
            i += k;
            continue;
        }
        SS_CHECK(ss_tok_buf_append(out, s + run, i - run));
        SS_CHECK(ss_tok_buf_append(out, repl, 3));
        i += k ? k : 1;
        run = i;
    }
    return ss_tok_buf_append(out, s + run, n - run);
}

int ss_tok_is_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

int ss_tok_is_word(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    if (cp == 0x200C || cp == 0x200D)
        return 1;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC: return 1;
    default: return 0;
    }
}

int ss_tok_is_numeric(uint32_t cp)
{
    if (cp < 0x80)
        return cp >= '0' && cp <= '9';
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}
