/* boot_internal.h — what the rendezvous' files share (bootstrap.c: both sides of the handshake and the mesh;
 * boot_gather.c: the leader's wait for its ranks). Not for use outside src/runner. */
#ifndef SS_BOOT_INTERNAL_H
#define SS_BOOT_INTERNAL_H

#include <stdint.h>

#include "runner/bootstrap.h"

#define BOOT_STAMP_MAX 256

/* Where the other ranks reach a rank's data plane ("" host: the leader's address). */
typedef struct boot_peer {
    char host[64];
    int32_t port;
} boot_peer;

/* Leader: waits until world-1 workers with stamp have joined on lfd (out->peer_ctrl, peers), the deadline passes
 * or watch (NULL: none) says to stop. */
ss_status boot_gather_ranks(int lfd, int world, const char *stamp, int64_t deadline_ms, ss_boot_watch_fn watch,
                            void *watch_arg, ss_boot *out, boot_peer *peers, ss_err *err);

#endif
