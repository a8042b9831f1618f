/* test_http_frame.c — the strict framing scanner: each refusal (loose chunk sizes, missing CRLFs, extensions,
 * trailers, bodies over the cap, both framing headers), what it lets through, and the same verdict however split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "serve/http_frame.h"

#define POST_CHUNKED "POST /v1/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
#define POST_CL(n) "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: " n "\r\n\r\n"

#define HEAD_CAP 16384 /* --max-header-bytes' default */

/* The status of bytes fed whole; the same bytes fed one at a time, and cut in two at every place, must agree
 * (status and reason). want_reason: a part of the reason (NULL: none expected). */
static void expect_caps(const char *bytes, size_t n, size_t max_body, size_t max_head, int want,
                        const char *want_reason)
{
    ss_http_frame *whole = ss_http_frame_create(max_body, max_head);
    assert_non_null(whole);
    int st = ss_http_frame_feed(whole, bytes, n);
    if (st != want)
        fail_msg("%d, not %d, for \"%.*s\": %s", st, want, (int)n, bytes, ss_http_frame_reason(whole));
    assert_int_equal(ss_http_frame_status(whole), want);
    if (want_reason && !strstr(ss_http_frame_reason(whole), want_reason))
        fail_msg("reason \"%s\" does not name \"%s\"", ss_http_frame_reason(whole), want_reason);
    if (!want)
        assert_string_equal(ss_http_frame_reason(whole), "");
    for (size_t cut = 0; cut <= n; cut++) {
        ss_http_frame *f = ss_http_frame_create(max_body, max_head);
        assert_non_null(f);
        (void)ss_http_frame_feed(f, bytes, cut);
        assert_int_equal(ss_http_frame_feed(f, bytes + cut, n - cut), want);
        assert_string_equal(ss_http_frame_reason(f), ss_http_frame_reason(whole));
        ss_http_frame_destroy(f);
    }
    ss_http_frame *f = ss_http_frame_create(max_body, max_head);
    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        (void)ss_http_frame_feed(f, bytes + i, 1);
    assert_int_equal(ss_http_frame_status(f), want);
    assert_string_equal(ss_http_frame_reason(f), ss_http_frame_reason(whole));
    ss_http_frame_destroy(f);
    ss_http_frame_destroy(whole);
}

static void expect_n(const char *bytes, size_t n, size_t max_body, int want, const char *want_reason)
{
    expect_caps(bytes, n, max_body, HEAD_CAP, want, want_reason);
}

static void expect(const char *bytes, size_t max_body, int want, const char *want_reason)
{
    expect_n(bytes, strlen(bytes), max_body, want, want_reason);
}

static void test_content_length(void **state)
{
    (void)state;
    expect(POST_CL("5") "hello", 100, 0, NULL);
    expect(POST_CL("100"), 100, 0, NULL);                         /* at the cap */
    expect(POST_CL("101"), 100, 413, "Content-Length 101 is larger than --max-body-bytes (100 bytes)");
    expect(POST_CL("99999999999999999999999"), 100, 413, "larger than --max-body-bytes");
    expect("POST / HTTP/1.1\r\ncontent-LENGTH:   200 \t\r\n\r\n", 100, 413, "Content-Length 200");
    /* not a plain number: 400 (libevent refused some in HTML, the header checks others) */
    expect(POST_CL("+200"), 100, 400, "Content-Length '+200' is not a number of bytes (decimal digits only)");
    expect(POST_CL("200, 200"), 100, 400, "Content-Length '200, 200' is not a number");
    expect(POST_CL("\t200"), 100, 400, "Content-Length '?200' is not a number");
    expect(POST_CL(""), 100, 400, "Content-Length '' is not a number");
    expect(POST_CL("abc"), 100, 400, "Content-Length 'abc' is not a number");
    expect(POST_CL("-1"), 100, 400, "Content-Length '-1' is not a number");
    expect(POST_CL("12345678901234567890123456789x"), 1u << 30, 400, "'123456789012345678901234' is not");
    expect("POST / HTTP/1.1\r\nContent-Length: 200\r\n 7\r\n\r\n", 100, 400, "obsolete line folding");
    expect("POST / HTTP/1.1\r\nContent-Length: 200\r7\r\n\r\n", 100, 400, "a CR that does not end a line");
    /* libevent frames by the first one */
    expect("POST / HTTP/1.1\r\nContent-Length: 200\r\nContent-Length: 5\r\n\r\n", 100, 413, "200");
    expect("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 200\r\n\r\n", 100, 0, NULL);
    /* libevent reads lines as C strings: a NUL anywhere in the head is refused */
    expect_n("POST / HTTP/1.1\r\nContent-Length: 200\0xyz\r\n\r\n", 44, 100, 400, "header section holds a NUL");
    expect_n("POST /\0 HTTP/1.1\r\n\r\n", 20, 100, 400, "request line holds a NUL");
    /* a line that starts with a NUL ends libevent's head: what follows is its body (helper-77's probe) */
    expect_n("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\0\r\n22 x: y\r\n\r\n0\r\n\r\n", 64, 100, 400,
             "header section holds a NUL");
    /* a name that only contains the header's */
    expect("POST / HTTP/1.1\r\nX-Content-Length: 200\r\nContent-Lengthy: 200\r\n\r\n", 100, 0, NULL);
}

static void test_both_headers(void **state)
{
    (void)state;
    expect("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", 100, 400,
           SS_HTTP_MSG_TE_AND_CL);
    expect("POST / HTTP/1.1\r\ncontent-length: 5\r\nTRANSFER-ENCODING: gzip\r\n\r\n", 100, 400, "both given");
}

static void test_chunked_ok(void **state)
{
    (void)state;
    expect(POST_CHUNKED "5\r\nhello\r\n0\r\n\r\n", 100, 0, NULL);
    expect(POST_CHUNKED "000A\r\n0123456789\r\n1\r\n\n\r\n00\r\n\r\n", 100, 0, NULL); /* an LF as data */
    expect(POST_CHUNKED "a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n", 20, 0, NULL); /* exactly the cap */
    expect("POST / HTTP/1.1\r\ntransfer-encoding: Chunked\r\n\r\n3\r\n\r\n\r\r\n0\r\n\r\n", 100, 0, NULL);
    /* the next request is not this scanner's, loose or not */
    expect(POST_CHUNKED "0\r\n\r\nGET / HTTP/1.1\r\n\r\n0x5 junk\n\n", 100, 0, NULL);
    /* lines of the head may end in a bare LF, as libevent reads them */
    expect("POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n2\r\nok\r\n0\r\n\r\n", 100, 0, NULL);
    /* a name with white space before its colon is not Transfer-Encoding to libevent (the header checks
     * refuse it) */
    expect("POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0x5\r\n", 100, 0, NULL);
    expect("POST / HTTP/1.1\r\nTransfer-Encoding-Extra: chunked\r\n\r\n0x5\r\n", 100, 0, NULL);
}

/* Which Transfer-Encoding makes libevent read a chunked body: the first one's value, "chunked" in any case, past
 * leading spaces and before trailing spaces and tabs. Another coding (no body read) is the header checks'. */
static void test_chunked_coding(void **state)
{
    (void)state;
    const char *chunked[] = {"chunked", "CHUNKED", "   chunked", "chunked  \t "};
    char req[256];
    for (size_t i = 0; i < sizeof chunked / sizeof *chunked; i++) {
        snprintf(req, sizeof req, "POST / HTTP/1.1\r\nTransfer-Encoding: %s\r\n\r\n+5\r\n", chunked[i]);
        expect(req, 100, 400, "starts with '+'");
    }
    /* any other coding, or more than one: refused at the head's end (libevent 2.1 reads them each its own way:
     * Debian's patched 2.1.12 reads "gzip, chunked" as chunked, loosely, and answers "chunked, gzip" in HTML) */
    const struct {
        const char *te, *says;
    } other[] = {
        {"gzip", "Transfer-Encoding 'gzip' is not supported; only 'chunked' is"},
        {"\tchunked", "Transfer-Encoding '?chunked' is not supported"},
        {"chunked, gzip", "'chunked, gzip'"},
        {"gzip, chunked", "'gzip, chunked'"},
        {",chunked", "',chunked'"},
        {"chunked;q=1", "'chunked;q=1'"},
        {"chunk ed", "'chunk ed'"},
        {"chunkedx", "'chunkedx'"},
        {"", "Transfer-Encoding '' is not supported"},
        {"chunked\r\nTransfer-Encoding: chunked", "Transfer-Encoding is given 2 times"},
        {"gzip\r\nTransfer-Encoding: chunked", "given 2 times"},
    };
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        snprintf(req, sizeof req, "POST / HTTP/1.1\r\nTransfer-Encoding: %s\r\n\r\n", other[i].te);
        expect(req, 100, 400, other[i].says);
    }
    expect_n("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\0gzip\r\n\r\n+5\r\n", 56, 100, 400, "holds a NUL");
    /* libevent appended a folded line to the value ("chunked x": no coding it reads), read a CR inside as a byte */
    expect("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n x\r\n\r\n+5\r\n", 100, 400, "obsolete line folding");
    expect("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\rx\r\n\r\n+5\r\n", 100, 400, "a CR that does not end");
}

/* The heads libevent 2.1 refused in HTML (now 400, 417, 431 or 505 here, so the answer is JSON), and what passes. */
static void test_head(void **state)
{
    (void)state;
    const char *ok[] = {
        "GET /v2/health/ready HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /v2/health/ready HTTP/1.0\r\n\r\n",
        "GET /v2/health/ready HTTP/1.1\nHost: a\n\n", /* bare LFs, as libevent (and RFC 9112 section 2.2) allow */
        "GET /v2/health/ready HTTP/1.1 \t \r\n\r\n",  /* blanks after the version, which libevent reads past */
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://host:8000/v2/health/ready?x=%zz HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://u%41:p@[::1]:80/v2 HTTP/1.1\r\n\r\n",
        "GET http://h%41:000080/v2 HTTP/1.1\r\n\r\n",
        "GET http://[v1.x]/v2 HTTP/1.1\r\n\r\n",
        "GET http://x:/v2 HTTP/1.1\r\n\r\n",
        "GET http:x HTTP/1.1\r\n\r\n",
        "GET x:/v2 HTTP/1.1\r\n\r\n",
        "GET v2/x?a:b HTTP/1.1\r\n\r\n",
        "GET a/b:c HTTP/1.1\r\n\r\n",
        "GET /v1/models?q=caf\xc3\xa9" " HTTP/1.1\r\n\r\n", /* raw UTF-8 in the target, as curl sends what it is given */
        "GET /v2/a%zz|{}^`\\ HTTP/1.1\r\n\r\n",            /* a path libevent takes as it is (a 404 follows) */
        "CONNECT h:443 HTTP/1.1\r\n\r\n",
        "CONNECT u@[::1]: HTTP/1.1\r\n\r\n",
        "CONNECT /v1/completions HTTP/1.1\r\n\r\n", /* (libevent reads an empty authority; the route's 405 follows) */
        "GET / HTTP/1.1\r\nX-A: caf\xc3\xa9" "\t1\r\nExpect:  100-Continue \t  \t           \r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length:  5 \t\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost : a\r\n\r\n", /* (the header checks refuse it, naming the header) */
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        expect(ok[i], 100, 0, NULL);
    const struct {
        const char *bytes;
        int status;
        const char *reason;
    } bad[] = {
        {"\r\nGET / HTTP/1.1\r\n\r\n", 400, "an empty line where the request line is due"},
        {"GET /\r\n\r\n", 400, "is not METHOD SP target SP HTTP-version"},
        {"GET\r\n\r\n", 400, "is not METHOD SP target SP HTTP-version"},
        {"A / HTTP/1.1\r\n\r\n", 400, "shorter than 14 bytes"},
        {"XY / HTTP/1.0\r\n\r\n", 400, "shorter than 14 bytes"},
        {"GET  / HTTP/1.1\r\n\r\n", 400, "the request line's target holds a space"},
        {"GET / HTTP/1.1 x\r\n\r\n", 400, "the request line's version is followed by 'x'"},
        {"GET\t/ HTTP/1.1\r\n\r\n", 400, "the request line's method holds byte 0x09"},
        {"G(T / HTTP/1.1\r\n\r\n", 400, "the request line's method holds '('"},
        {"GET /a\x7f" " HTTP/1.1\r\n\r\n", 400, "holds byte 0x7f, a control character"},
        {"GET / HTTP/2.0\r\n\r\n", 505, "HTTP/2.0 is not supported: this server speaks HTTP/1.1"},
        {"GET / HTTP/1.2\r\n\r\n", 505, "HTTP/1.2 is not supported"},
        {"GET / HTTP/1.10\r\n\r\n", 400, "version 'HTTP/1.10' is not HTTP/<digit>.<digit>"},
        {"GET / HTTP/01.1\r\n\r\n", 400, "version 'HTTP/01.1' is not"},
        {"GET / http/1.1\r\n\r\n", 400, "version 'http/1.1' is not"},
        {"GET http://[x/v2 HTTP/1.1\r\n\r\n", 400, "the request target's authority '[x' is not [user@]host[:port]"},
        {"GET http://x:abc/v2 HTTP/1.1\r\n\r\n", 400, "authority 'x:abc'"},
        {"GET http://x:99999999/v2 HTTP/1.1\r\n\r\n", 400, "authority 'x:99999999'"},
        {"GET http://x:65536/v2 HTTP/1.1\r\n\r\n", 400, "authority 'x:65536'"},
        {"GET http://%zz/v2 HTTP/1.1\r\n\r\n", 400, "authority '%zz'"},
        {"GET http://%zz@h/ HTTP/1.1\r\n\r\n", 400, "authority '%zz@h'"},
        {"GET http://x^y/v2 HTTP/1.1\r\n\r\n", 400, "authority 'x^y'"},
        {"GET http://[1::2::3]/v2 HTTP/1.1\r\n\r\n", 400, "authority '[1::2::3]'"},
        {"GET http://[v.x]/v2 HTTP/1.1\r\n\r\n", 400, "authority '[v.x]'"},
        {"GET a://b:c:d/ HTTP/1.1\r\n\r\n", 400, "authority 'b:c:d'"},
        {"GET //x^y/v2 HTTP/1.1\r\n\r\n", 400, "authority 'x^y'"},
        {"GET 1:x HTTP/1.1\r\n\r\n", 400, "the request target '1:' has a colon in its first segment but no scheme"},
        {"GET :x HTTP/1.1\r\n\r\n", 400, "target ':' has a colon"},
        {"GET +a:b HTTP/1.1\r\n\r\n", 400, "target '+a:' has a colon"},
        {"CONNECT a:b HTTP/1.1\r\n\r\n", 400, "CONNECT's target 'a:b' is not [user@]host[:port]"},
        {"CONNECT h:99999 HTTP/1.1\r\n\r\n", 400, "CONNECT's target 'h:99999'"},
        {"CONNECT [zz]:443 HTTP/1.1\r\n\r\n", 400, "CONNECT's target '[zz]:443'"},
        {"CONNECT u@@h:1 HTTP/1.1\r\n\r\n", 400, "CONNECT's target 'u@@h:1'"},
        {"GET / HTTP/1.1\r\nHost: a\x01" "b\r\n\r\n", 400, "holds byte 0x01, a control character"},
        {"GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n", 400, "holds byte 0x7f, a control character"},
        {"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400, "header section holds a CR that does not end a line"},
        {"GET / HTTP/1.1\r\n 2\r\nHost: a\r\n\r\n", 400, "obsolete line folding"},
        {"GET / HTTP/1.1\r\nX-A: 1\r\n\t2\r\n\r\n", 400, "obsolete line folding"},
        {"GET / HTTP/1.1\r\nBadHeaderNoColon\r\n\r\n", 400, "header line 'BadHeaderNoColon' has no colon"},
        {"POST / HTTP/1.1\r\nExpect: foo\r\nContent-Length: 2\r\n\r\n{}", 417,
         "Expect 'foo' is not supported (only 100-continue is"},
        {"POST / HTTP/1.1\r\nExpect:\t100-continue\r\n\r\n", 417, "Expect '?100-continue'"}, /* (libevent: a tab kept) */
        {"POST / HTTP/1.1\r\nExpect: 100-continue\r\nExpect: 100-continuex\r\n\r\n", 417, "'100-continuex'"},
        {"POST / HTTP/1.1\r\nExpect: 100-continue, foo\r\n\r\n", 417, "'100-continue, foo'"},
        /* the quoted Content-Length is the first one's, whatever headers follow */
        {"POST / HTTP/1.1\r\nContent-Length: abc\r\nX-Y: z\r\nExpect: 100-continue\r\n\r\n", 400,
         "Content-Length 'abc' is not a number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect(bad[i].bytes, 100, bad[i].status, bad[i].reason);
    /* a target longer than what is kept: a path passes; a first segment with no end in sight, an authority past it,
     * are refused */
    char big[1500];
    snprintf(big, sizeof big, "GET /%01200d HTTP/1.1\r\n\r\n", 0);
    expect(big, 100, 0, NULL);
    snprintf(big, sizeof big, "GET %01200d://%%zz/ HTTP/1.1\r\n\r\n", 0);
    expect(big, 100, 400, "the request target's first 1024 bytes hold no '/', '?' or '#'");
    snprintf(big, sizeof big, "GET http://%01100d/ HTTP/1.1\r\n\r\n", 0);
    expect(big, 100, 400, "the request target's authority '0000");
    /* the head's cap, line ends included: at the cap passes, one byte more is 431 (at that byte) */
    const char *h = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    expect_caps(h, strlen(h), 100, strlen(h), 0, NULL);
    expect_caps(h, strlen(h), 100, strlen(h) - 1, 431,
                "the request's head (request line and header fields) is larger than --max-header-bytes (26 bytes)");
    expect_caps("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 45, 100, 16, 431, "(16 bytes)");
    /* the body does not count */
    expect_caps(POST_CL("5") "hello", strlen(POST_CL("5")) + 5, 100, strlen(POST_CL("5")), 0, NULL);
}

static void test_chunk_size_lines(void **state)
{
    (void)state;
    expect(POST_CHUNKED "0x24\r\n", 100, 400, "chunk 1 of the chunked body: 'x' after its size's hex digits");
    expect(POST_CHUNKED "+24\r\n", 100, 400, "chunk 1 of the chunked body: its size line starts with '+'");
    expect(POST_CHUNKED "-1\r\n", 100, 400, "starts with '-'");
    expect(POST_CHUNKED " 24\r\n", 100, 400, "starts with a space");
    expect(POST_CHUNKED "24 x\r\n", 100, 400, "a space after its size's hex digits");
    expect(POST_CHUNKED "24;a=b\r\n", 100, 400, "chunk extension");
    expect(POST_CHUNKED "24\n", 100, 400, "an LF after its size's hex digits");
    expect(POST_CHUNKED "2\r\r\n", 100, 400, "its size line's CR is followed by a CR");
    expect(POST_CHUNKED "\r\n5\r\nhello\r\n0\r\n\r\n", 100, 400, "its size line starts with a CR");
    expect(POST_CHUNKED "g\r\n", 100, 400, "starts with 'g'");
    /* the chunk is named by its number */
    expect(POST_CHUNKED "1\r\na\r\n1\r\nb\r\n0x1\r\n", 100, 400, "chunk 3 of the chunked body");
    expect_n(POST_CHUNKED "1\0\r\n", sizeof POST_CHUNKED + 3, 100, 400, "byte 0x00 after its size's hex digits");
}

static void test_chunk_data_and_end(void **state)
{
    (void)state;
    expect(POST_CHUNKED "5\r\nhelloX\r\n", 100, 400, "its 5 bytes of data are followed by 'X', not CRLF");
    expect(POST_CHUNKED "5\r\nhello\n0\r\n\r\n", 100, 400, "followed by an LF, not CRLF");
    expect(POST_CHUNKED "5\r\nhello\r0\r\n\r\n", 100, 400, "followed by '0', not CRLF");
    expect(POST_CHUNKED "5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n", 100, 400, "trailer fields are not accepted");
    expect(POST_CHUNKED "0\r\nAuthorization: Bearer k\r\n\r\n", 100, 400, "followed by 'A'");
    expect(POST_CHUNKED "0\r\n\n", 100, 400, "followed by an LF");
    expect(POST_CHUNKED "0\r\n\rX", 100, 400, "followed by 'X'");
}

static void test_chunked_cap(void **state)
{
    (void)state;
    expect(POST_CHUNKED "8\r\n12345678\r\n3\r\nabc\r\n", 10, 413, "chunked body is larger than --max-body-bytes (10");
    expect(POST_CHUNKED "b\r\n", 10, 413, "larger");
    expect(POST_CHUNKED "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF\r\n", (size_t)1 << 40, 413, "larger");
    expect(POST_CHUNKED "0000000000000000000000000000000000000001\r\nz\r\n0\r\n\r\n", 1, 0, NULL);
}

static void test_sticky_and_triton(void **state)
{
    (void)state;
    ss_http_frame *f = ss_http_frame_create(100, HEAD_CAP);
    assert_non_null(f);
    assert_int_equal(ss_http_frame_feed(f, POST_CHUNKED "+5\r\n", strlen(POST_CHUNKED) + 4), 400);
    char reason[256];
    snprintf(reason, sizeof reason, "%s", ss_http_frame_reason(f));
    assert_int_equal(ss_http_frame_feed(f, "hello\r\n0\r\nX: y\r\n\r\n", 18), 400); /* later bytes change nothing */
    assert_string_equal(ss_http_frame_reason(f), reason);
    assert_int_equal(ss_http_frame_triton(f), 0);
    ss_http_frame_destroy(f);

    const char *triton[] = {"POST /v2/models/m/generate HTTP/1.1\r\n", "GET /v2 HTTP/1.1\r\n",
                            "POST http://host:8000/v2/models/m/generate HTTP/1.1\r\n"};
    const char *other[] = {"POST /v1/completions HTTP/1.1\r\n", "GET / HTTP/1.1\r\n", "POST http://v2/x HTTP/1.1\r\n",
                           "GET /x/v2 HTTP/1.1\r\n"};
    for (size_t i = 0; i < 3 + 4; i++) {
        const char *line = i < 3 ? triton[i] : other[i - 3];
        f = ss_http_frame_create(100, HEAD_CAP);
        assert_non_null(f);
        assert_int_equal(ss_http_frame_feed(f, line, strlen(line)), 0);
        if (ss_http_frame_triton(f) != (i < 3))
            fail_msg("triton %d for %s", ss_http_frame_triton(f), line);
        ss_http_frame_destroy(f);
    }
    /* refused inside the request line: the target so far decides the shape (helper-82: it was OpenAI's) */
    const char *mid[] = {"GET /v2/health/ready HTTP/1.1 x", "GET /v2/a\x01", "POST http://h/v2/x HTTP/9.9\n",
                         "GET /v2/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* over the cap of 40 */};
    for (size_t i = 0; i < 4; i++) {
        f = ss_http_frame_create(100, 40);
        assert_non_null(f);
        assert_true(ss_http_frame_feed(f, mid[i], strlen(mid[i])) != 0);
        if (!ss_http_frame_triton(f))
            fail_msg("not Triton's shape for %s: %s", mid[i], ss_http_frame_reason(f));
        ss_http_frame_destroy(f);
    }
    ss_http_frame_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length),   cmocka_unit_test(test_both_headers),
        cmocka_unit_test(test_chunked_ok),       cmocka_unit_test(test_chunked_coding),
        cmocka_unit_test(test_chunk_size_lines),
        cmocka_unit_test(test_chunk_data_and_end), cmocka_unit_test(test_chunked_cap),
        cmocka_unit_test(test_sticky_and_triton), cmocka_unit_test(test_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
