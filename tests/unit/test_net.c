/* test_net.c — core/net.c: address parsing, connections with deadlines (refused, self-connected), and the
 * framed messages' limits (a peer that closes early, a length over the bound), on loopback sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/net.h"

static void test_split_addr(void **state)
{
    (void)state;
    char host[64];
    int port = 0;
    ss_err err = {{0}};
    assert_int_equal(ss_net_split_addr("leader.ns.svc:29500", host, sizeof host, &port, &err), SS_OK);
    assert_string_equal(host, "leader.ns.svc");
    assert_int_equal(port, 29500);
    assert_int_equal(ss_net_split_addr("[::1]:8000", host, sizeof host, &port, &err), SS_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8000);
    assert_int_equal(ss_net_split_addr("no-port", host, sizeof host, &port, &err), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "no-port"));
    assert_int_equal(ss_net_split_addr(":80", host, sizeof host, &port, &err), SS_ERR_INVALID_ARG);
    assert_int_equal(ss_net_split_addr("h:65536", host, sizeof host, &port, &err), SS_ERR_INVALID_ARG);
    assert_int_equal(ss_net_split_addr("h:80x", host, sizeof host, &port, &err), SS_ERR_INVALID_ARG);
    /* an empty, zero, signed or blank-led port is no port (session 60: "h:" was port 0) */
    const char *bad_ports[] = {"h:", "h:0", "h:+80", "h: 80", "h:-1", "h:0x50"};
    for (size_t i = 0; i < sizeof bad_ports / sizeof bad_ports[0]; i++) {
        assert_int_equal(ss_net_split_addr(bad_ports[i], host, sizeof host, &port, &err), SS_ERR_INVALID_ARG);
        assert_non_null(strstr(err.msg, "1..65535"));
    }
    assert_int_equal(ss_net_split_addr("h:1", host, sizeof host, &port, &err), SS_OK);
    assert_int_equal(port, 1);
    assert_int_equal(ss_net_split_addr("a-host-name-longer-than-the-buffer:1", host, 8, &port, &err),
                     SS_ERR_INVALID_ARG);
}

/* A loopback socket bound to a port but not listening: connections to it are refused. *port_out: the port. */
static int bound_not_listening(int *port_out)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    *port_out = ntohs(a.sin_port);
    return fd;
}

/* Nothing listens: ss_net_connect retries until its deadline and says so. */
static void test_connect_refused_until_deadline(void **state)
{
    (void)state;
    int port = 0;
    const int hold = bound_not_listening(&port);
    int fd = -1;
    ss_err err = {{0}};
    const int64_t t0 = ss_now_ms();
    assert_int_equal(ss_net_connect("127.0.0.1", port, t0 + 500, &fd, &err), SS_ERR_TIMEOUT);
    assert_int_equal(fd, -1);
    assert_non_null(strstr(err.msg, "before the deadline"));
    close(hold);
}

/* A socket bound to a loopback port and connected to that same port joins itself (simultaneous open). */
static void test_self_connected(void **state)
{
    (void)state;
    int port = 0;
    const int fd = bound_not_listening(&port);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(ss_net_self_connected(fd), 1);
    close(fd);

    /* an ordinary connection is not */
    int lfd = -1, lport = 0, cfd = -1, afd = -1;
    ss_err err = {{0}};
    assert_int_equal(ss_net_listen("127.0.0.1", 0, &lfd, &lport, &err), SS_OK);
    assert_int_equal(ss_net_connect("127.0.0.1", lport, ss_now_ms() + 5000, &cfd, &err), SS_OK);
    assert_int_equal(ss_net_accept(lfd, ss_now_ms() + 5000, &afd, &err), SS_OK);
    assert_int_equal(ss_net_self_connected(cfd), 0);
    assert_int_equal(ss_net_self_connected(afd), 0);
    close(cfd), close(afd), close(lfd);
}

/* A connected pair over loopback: *a the client end, *b the server end. */
static void pair(int *a, int *b)
{
    int lfd = -1, lport = 0;
    ss_err err = {{0}};
    assert_int_equal(ss_net_listen("127.0.0.1", 0, &lfd, &lport, &err), SS_OK);
    assert_int_equal(ss_net_connect("127.0.0.1", lport, ss_now_ms() + 5000, a, &err), SS_OK);
    assert_int_equal(ss_net_accept(lfd, ss_now_ms() + 5000, b, &err), SS_OK);
    close(lfd);
}

static void test_messages(void **state)
{
    (void)state;
    int a = -1, b = -1;
    pair(&a, &b);
    const int64_t dl = ss_now_ms() + 5000;
    assert_int_equal(ss_net_send_msg(a, 7, "hello", 5, dl), SS_OK);
    uint32_t type = 0;
    uint8_t *msg = NULL;
    size_t len = 0;
    assert_int_equal(ss_net_recv_msg(b, &type, &msg, &len, 64, dl), SS_OK);
    assert_int_equal(type, 7);
    assert_int_equal(len, 5);
    assert_memory_equal(msg, "hello", 5);
    ss_free(msg);
    msg = NULL;

    /* a length over the reader's bound is refused before anything is allocated */
    assert_int_equal(ss_net_send_msg(a, 7, "0123456789", 10, dl), SS_OK);
    assert_int_equal(ss_net_recv_msg(b, &type, &msg, &len, 4, dl), SS_ERR_FORMAT);
    assert_null(msg);

    /* garbage that is not a frame (an HTTP answer): its "length" is huge, so refused as well */
    int c = -1, d = -1;
    pair(&c, &d);
    const char *http = "HTTP/1.0 400 Bad Request\r\n\r\n";
    assert_int_equal(ss_net_write_all(c, http, strlen(http), dl), SS_OK);
    assert_int_equal(ss_net_recv_msg(d, &type, &msg, &len, 1u << 20, dl), SS_ERR_FORMAT);

    /* nothing arrives: the deadline ends the wait */
    assert_int_equal(ss_net_recv_msg(c, &type, &msg, &len, 64, ss_now_ms() + 100), SS_ERR_TIMEOUT);
    close(a), close(b), close(c), close(d);

    /* the peer closes mid-frame (8 bytes announced, 3 sent): an error, not a hang */
    pair(&a, &b);
    assert_int_equal(ss_net_write_all(a, "\x07\0\0\0\x08\0\0\0\0\0\0\0abc", 15, dl), SS_OK);
    close(a);
    assert_int_equal(ss_net_recv_msg(b, &type, &msg, &len, 64, dl), SS_ERR_COMM);
    assert_null(msg);
    close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_addr),
        cmocka_unit_test(test_connect_refused_until_deadline),
        cmocka_unit_test(test_self_connected),
        cmocka_unit_test(test_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
