/* fuzz_http_frame.c — libFuzzer target over the strict head and framing scanner (serve/http_frame.c): the first byte
 * picks where the input is cut in two, the second the body cap, the third the head cap. Any bytes give 0, 400, 413,
 * 417, 431 or 505 with a printable reason (none for 0), the same fed whole, in two pieces or a byte at a time, and
 * later bytes change nothing. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "serve/http_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The verdict's checks, for one scanner fed everything. */
static void check_verdict(const ss_http_frame *f, int st)
{
    const char *r = ss_http_frame_reason(f);
    if ((st != 0 && st != 400 && st != 413 && st != 417 && st != 431 && st != 505) || st != ss_http_frame_status(f) ||
        (st == 0) != (r[0] == '\0'))
        __builtin_trap();
    for (const char *p = r; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            __builtin_trap();
}

static void same(const ss_http_frame *a, const ss_http_frame *b)
{
    if (ss_http_frame_status(a) != ss_http_frame_status(b) ||
        strcmp(ss_http_frame_reason(a), ss_http_frame_reason(b)) != 0 ||
        ss_http_frame_triton(a) != ss_http_frame_triton(b))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t cut = data[0], max_body = (size_t)data[1] * 7, max_head = data[2] ? (size_t)data[2] * 4 : 16384;
    data += 3, size -= 3;
    cut = size ? cut % (size + 1) : 0;
    ss_http_frame *whole = ss_http_frame_create(max_body, max_head), *two = ss_http_frame_create(max_body, max_head),
                  *bytes = ss_http_frame_create(max_body, max_head);
    if (!whole || !two || !bytes)
        goto out;
    int st = ss_http_frame_feed(whole, data, size);
    check_verdict(whole, st);
    (void)ss_http_frame_feed(two, data, cut);
    check_verdict(two, ss_http_frame_feed(two, data + cut, size - cut));
    same(whole, two);
    for (size_t i = 0; i < size && i < 4096; i++)
        (void)ss_http_frame_feed(bytes, data + i, 1);
    if (size <= 4096)
        same(whole, bytes);
    if (st) { /* a refusal stays, whatever follows */
        char before[256];
        strncpy(before, ss_http_frame_reason(whole), sizeof before - 1);
        before[sizeof before - 1] = '\0';
        if (ss_http_frame_feed(whole, data, size) != st || strcmp(before, ss_http_frame_reason(whole)) != 0)
            __builtin_trap();
    }
out:
    ss_http_frame_destroy(whole);
    ss_http_frame_destroy(two);
    ss_http_frame_destroy(bytes);
    return 0;
}
