/* net.h — TCP sockets with deadlines: listen, connect with retries (DNS may not resolve yet), whole
 * reads/writes that give up at a deadline, and length-framed messages for the control plane. */
#ifndef SS_NET_H
#define SS_NET_H

#include <stddef.h>
#include <stdint.h>

#include "core/clock.h" /* deadlines below are absolute ss_now_ms times */
#include "core/status.h"

/* Splits "host:port" (IPv6 as "[::1]:port"); the port is decimal digits, 1..65535. */
ss_status ss_net_split_addr(const char *addr, char *host, size_t host_cap, int *port, ss_err *err);
/* Listens on host:port (port 0 = ephemeral); *port_out gets the bound port. Returns the fd. */
ss_status ss_net_listen(const char *host, int port, int *fd_out, int *port_out, ss_err *err);
/* Accepts a connection waiting on the (non-blocking) listener lfd now: its fd, set up like every other, or -1
 * (errno EAGAIN: none is waiting). */
int ss_net_accept_now(int lfd);
/* Accepts one connection before deadline_ms (absolute, ss_now_ms clock). */
ss_status ss_net_accept(int lfd, int64_t deadline_ms, int *fd_out, ss_err *err);
/* Connects, retrying resolution and connection every ~200 ms until deadline_ms. A connection to itself
 * (below) counts as refused. */
ss_status ss_net_connect(const char *host, int port, int64_t deadline_ms, int *fd_out, ss_err *err);
/* 1 when a connected socket's two ends are the same address and port. Connecting to a local port in the
 * ephemeral range where nothing listens can pick that very port as the source (TCP simultaneous open), and
 * a retry loop like ss_net_connect's eventually does: it then "connects" to itself. */
int ss_net_self_connected(int fd);
/* Writes / reads exactly n bytes before deadline_ms (< 0: no deadline). EOF -> SS_ERR_COMM. */
ss_status ss_net_write_all(int fd, const void *buf, size_t n, int64_t deadline_ms);
ss_status ss_net_read_all(int fd, void *buf, size_t n, int64_t deadline_ms);

/* Describes the local end of a connected socket: "eth0 10.0.0.5" (interface name and address), for
 * logs that say which network a rank uses. */
void ss_net_local_desc(int fd, char *buf, size_t cap);

/* Framed message: u32 type, u64 length, payload. max_len bounds what a peer can make us allocate. */
/* Whether the peer on fd has closed its side or reset the connection, waiting up to wait_ms for it (0: look
 * now). POLLRDHUP sees the end of the stream also behind bytes not yet read, where a one-byte peek sees only
 * them. fd < 0: no. */
int ss_net_hung_up(int fd, int wait_ms);
ss_status ss_net_send_msg(int fd, uint32_t type, const void *payload, size_t len, int64_t deadline_ms);
/* *payload is ss_malloc'd (caller frees). */
ss_status ss_net_recv_msg(int fd, uint32_t *type, uint8_t **payload, size_t *len, size_t max_len,
                          int64_t deadline_ms);

#endif
