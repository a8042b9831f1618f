/* sse.c — Server-Sent Events framing: "data: <line>\n" per line of the payload, then "\n". */
#include "serve/sse.h"

#include <string.h>

void ss_sse_event(ss_jbuf *out, const char *data, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && data[i] != '\n')
            continue;
        size_t end = i;
        if (end > start && data[end - 1] == '\r')
            end--;
        ss_jbuf_raw(out, "data: ", 6);
        ss_jbuf_raw(out, data + start, end - start);
        ss_jbuf_raw(out, "\n", 1);
        start = i + 1;
    }
    ss_jbuf_raw(out, "\n", 1);
}

void ss_sse_done(ss_jbuf *out)
{
    ss_jbuf_cstr(out, "data: [DONE]\n\n");
}
