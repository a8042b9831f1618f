/* net.c — blocking-style socket I/O built on non-blocking fds and poll(), so every wait has a deadline. */
#include "core/net.h"

#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"

ss_status ss_net_split_addr(const char *addr, char *host, size_t host_cap, int *port, ss_err *err)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "address '%s': expected HOST:PORT", addr);
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    /* digits only: strtol would take "" (session 60: "host:" became port 0), " 80" or "+80" */
    const char *digits = colon + 1;
    char *end = NULL;
    long p = digits[0] >= '0' && digits[0] <= '9' ? strtol(digits, &end, 10) : 0;
    if (!end || *end || p < 1 || p > 65535)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "address '%s': the port must be 1..65535", addr);
    if (hl >= host_cap)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "address '%s': the host name is longer than %zu bytes", addr,
                          host_cap - 1);
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return SS_OK;
}

static void net_tune(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
}

ss_status ss_net_listen(const char *host, int port, int *fd_out, int *port_out, ss_err *err)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host && *host ? host : NULL, ps, &hints, &res);
    if (rc != 0)
        return ss_err_set(err, SS_ERR_IO, "listen on %s:%d: %s", host ? host : "*", port, gai_strerror(rc));
    int fd = -1;
    ss_status st = SS_ERR_IO;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0) {
            st = SS_OK;
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (st != SS_OK)
        return ss_err_set(err, SS_ERR_IO, "listen on %s:%d: %s", host ? host : "*", port, strerror(errno));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    *fd_out = fd;
    return SS_OK;
}

static int net_wait(int fd, short ev, int64_t deadline_ms)
{
    for (;;) {
        int tmo = -1;
        if (deadline_ms >= 0) {
            int64_t left = deadline_ms - ss_now_ms();
            if (left <= 0)
                return 0;
            tmo = left > 1000000 ? 1000000 : (int)left;
        }
        struct pollfd p = {fd, ev, 0};
        int rc = poll(&p, 1, tmo);
        if (rc > 0)
            return 1;
        if (rc < 0 && errno != EINTR)
            return -1;
        if (rc == 0 && deadline_ms >= 0 && ss_now_ms() >= deadline_ms)
            return 0;
    }
}

int ss_net_accept_now(int lfd)
{
    int fd = accept(lfd, NULL, NULL);
    if (fd >= 0)
        net_tune(fd);
    return fd;
}

ss_status ss_net_accept(int lfd, int64_t deadline_ms, int *fd_out, ss_err *err)
{
    for (;;) {
        int w = net_wait(lfd, POLLIN, deadline_ms);
        if (w == 0)
            return ss_err_set(err, SS_ERR_TIMEOUT, "no peer connected before the deadline");
        if (w < 0)
            return ss_err_set(err, SS_ERR_IO, "accept: %s", strerror(errno));
        int fd = ss_net_accept_now(lfd);
        if (fd >= 0) {
            *fd_out = fd;
            return SS_OK;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
            return ss_err_set(err, SS_ERR_IO, "accept: %s", strerror(errno));
    }
}

int ss_net_self_connected(int fd)
{
    struct sockaddr_storage a, b;
    socklen_t la = sizeof a, lb = sizeof b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    if (getsockname(fd, (struct sockaddr *)&a, &la) != 0 || getpeername(fd, (struct sockaddr *)&b, &lb) != 0)
        return 0;
    return la == lb && memcmp(&a, &b, la) == 0;
}

static int net_try_connect(const char *host, int port, int64_t deadline_ms)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(host, ps, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            int64_t d = ss_now_ms() + 2000;
            if (deadline_ms >= 0 && d > deadline_ms)
                d = deadline_ms;
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (net_wait(fd, POLLOUT, d) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && !soerr)
                rc = 0;
        }
        if (rc == 0 && ss_net_self_connected(fd))
            rc = -1; /* nothing listened, and the kernel joined our own port to itself: as if refused */
        if (rc != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0)
        net_tune(fd);
    return fd;
}

ss_status ss_net_connect(const char *host, int port, int64_t deadline_ms, int *fd_out, ss_err *err)
{
    for (;;) {
        int fd = net_try_connect(host, port, deadline_ms);
        if (fd >= 0) {
            *fd_out = fd;
            return SS_OK;
        }
        if (deadline_ms >= 0 && ss_now_ms() + 200 > deadline_ms)
            return ss_err_set(err, SS_ERR_TIMEOUT, "could not connect to %s:%d before the deadline", host, port);
        struct timespec ts = {0, 200 * 1000000};
        nanosleep(&ts, NULL);
    }
}

ss_status ss_net_write_all(int fd, const void *buf, size_t n, int64_t deadline_ms)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            int r = net_wait(fd, POLLOUT, deadline_ms);
            if (r == 0)
                return SS_ERR_TIMEOUT;
            if (r < 0)
                return SS_ERR_COMM;
            continue;
        }
        return SS_ERR_COMM;
    }
    return SS_OK;
}

ss_status ss_net_read_all(int fd, void *buf, size_t n, int64_t deadline_ms)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t r = recv(fd, p, n, 0);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r == 0)
            return SS_ERR_COMM; /* peer closed */
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            int w = net_wait(fd, POLLIN, deadline_ms);
            if (w == 0)
                return SS_ERR_TIMEOUT;
            if (w < 0)
                return SS_ERR_COMM;
            continue;
        }
        return SS_ERR_COMM;
    }
    return SS_OK;
}

void ss_net_local_desc(int fd, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    snprintf(buf, cap, "?");
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return;
    char ip[INET6_ADDRSTRLEN] = "?";
    const void *a = ss.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                              : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
    inet_ntop(ss.ss_family, a, ip, sizeof ip);
    const char *ifname = "?";
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) == 0) {
        for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
            if (!i->ifa_addr || i->ifa_addr->sa_family != ss.ss_family)
                continue;
            char other[INET6_ADDRSTRLEN] = "";
            const void *b = i->ifa_addr->sa_family == AF_INET6
                                ? (const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr
                                : (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr;
            inet_ntop(i->ifa_addr->sa_family, b, other, sizeof other);
            if (!strcmp(other, ip)) {
                snprintf(buf, cap, "%s %s", i->ifa_name, ip);
                freeifaddrs(ifs);
                return;
            }
        }
        freeifaddrs(ifs);
    }
    snprintf(buf, cap, "%s %s", ifname, ip);
}

int ss_net_hung_up(int fd, int wait_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return fd >= 0 && poll(&p, 1, wait_ms) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

ss_status ss_net_send_msg(int fd, uint32_t type, const void *payload, size_t len, int64_t deadline_ms)
{
    uint8_t hdr[12];
    uint64_t l = len;
    memcpy(hdr, &type, 4);
    memcpy(hdr + 4, &l, 8);
    SS_CHECK(ss_net_write_all(fd, hdr, sizeof hdr, deadline_ms));
    return ss_net_write_all(fd, payload, len, deadline_ms);
}

ss_status ss_net_recv_msg(int fd, uint32_t *type, uint8_t **payload, size_t *len, size_t max_len,
                          int64_t deadline_ms)
{
    uint8_t hdr[12];
    SS_CHECK(ss_net_read_all(fd, hdr, sizeof hdr, deadline_ms));
    uint64_t l;
    memcpy(type, hdr, 4);
    memcpy(&l, hdr + 4, 8);
    if (l > max_len)
        return SS_ERR_FORMAT;
    uint8_t *p = ss_malloc((size_t)l + 1);
    if (!p)
        return SS_ERR_NOMEM;
    ss_status st = ss_net_read_all(fd, p, (size_t)l, deadline_ms);
    if (st != SS_OK) {
        ss_free(p);
        return st;
    }
    *payload = p;
    *len = (size_t)l;
    return SS_OK;
}
