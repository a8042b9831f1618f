/* test_comm_tcp.c — the tcp communicator over socket pairs, one thread a rank: sums in rank order, and the peer a
 * failed call blames (one that closed its end, one that never answered), which step errors name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "comm/comm.h"

#define RANKS 3

/* fds[a][b]: rank a's end of the pair that joins a and b (-1 on the diagonal). */
static void mesh(int n, int fds[RANKS][RANKS])
{
    for (int a = 0; a < n; a++)
        fds[a][a] = -1;
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++) {
            int sv[2];
            assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
            for (int k = 0; k < 2; k++)
                fcntl(sv[k], F_SETFL, fcntl(sv[k], F_GETFL) | O_NONBLOCK);
            fds[a][b] = sv[0];
            fds[b][a] = sv[1];
        }
}

typedef struct rank_job {
    ss_comm *c;
    float buf[4];
    ss_status st;
} rank_job;

static void *rank_all_reduce(void *arg)
{
    rank_job *j = arg;
    j->st = j->c->iface->all_reduce_sum(j->c->ctx, j->buf, 4, SS_DTYPE_F32);
    return NULL;
}

static void test_sums_and_no_blame(void **state)
{
    (void)state;
    int fds[RANKS][RANKS];
    mesh(RANKS, fds);
    rank_job jobs[RANKS];
    pthread_t th[RANKS];
    ss_err err;
    for (int r = 0; r < RANKS; r++) {
        assert_int_equal(ss_comm_tcp_create(r, RANKS, fds[r], 5000, &jobs[r].c, &err), SS_OK);
        for (int i = 0; i < 4; i++)
            jobs[r].buf[i] = (float)(r + 1) * (float)(i + 1);
    }
    for (int r = 0; r < RANKS; r++)
        assert_int_equal(pthread_create(&th[r], NULL, rank_all_reduce, &jobs[r]), 0);
    for (int r = 0; r < RANKS; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < RANKS; r++) {
        assert_int_equal(jobs[r].st, SS_OK);
        for (int i = 0; i < 4; i++)
            assert_true(jobs[r].buf[i] == 6.0f * (float)(i + 1)); /* 1 + 2 + 3, exact in f32 */
        ss_comm_blame how = 0;
        assert_int_equal(jobs[r].c->iface->failed_peer(jobs[r].c->ctx, &how), -1);
        ss_comm_destroy(jobs[r].c);
    }
}

/* Rank 2's process is gone: its ends of the pairs are closed. Rank 0 blames rank 2 as closed. */
static void test_closed_peer_is_named(void **state)
{
    (void)state;
    int fds[RANKS][RANKS];
    mesh(RANKS, fds);
    close(fds[2][0]);
    close(fds[2][1]);
    rank_job jobs[2];
    pthread_t th[2];
    ss_err err;
    for (int r = 0; r < 2; r++) {
        assert_int_equal(ss_comm_tcp_create(r, RANKS, fds[r], 5000, &jobs[r].c, &err), SS_OK);
        pthread_create(&th[r], NULL, rank_all_reduce, &jobs[r]);
    }
    for (int r = 0; r < 2; r++) /* both ends before either closes: a closed rank 0 would be blamed too */
        pthread_join(th[r], NULL);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(jobs[r].st, SS_ERR_COMM);
        ss_comm_blame how = 0;
        assert_int_equal(jobs[r].c->iface->failed_peer(jobs[r].c->ctx, &how), 2);
        assert_int_equal(how, SS_COMM_PEER_CLOSED);
        ss_comm_destroy(jobs[r].c);
    }
}

/* Rank 1 is alive but never calls: rank 0's call ends at its deadline, blaming rank 1 as silent. */
static void test_silent_peer_is_named(void **state)
{
    (void)state;
    int fds[RANKS][RANKS];
    mesh(2, fds);
    ss_comm *c = NULL;
    ss_err err;
    assert_int_equal(ss_comm_tcp_create(0, 2, fds[0], 100, &c, &err), SS_OK);
    float buf[4] = {1, 2, 3, 4};
    assert_int_equal(c->iface->all_reduce_sum(c->ctx, buf, 4, SS_DTYPE_F32), SS_ERR_TIMEOUT);
    ss_comm_blame how = 0;
    assert_int_equal(c->iface->failed_peer(c->ctx, &how), 1);
    assert_int_equal(how, SS_COMM_PEER_SILENT);
    /* aborted: no peer is to blame */
    c->iface->abort(c->ctx);
    assert_int_equal(c->iface->all_reduce_sum(c->ctx, buf, 4, SS_DTYPE_F32), SS_ERR_CANCELLED);
    assert_int_equal(c->iface->failed_peer(c->ctx, &how), -1);
    ss_comm_destroy(c);
    close(fds[1][0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sums_and_no_blame),
        cmocka_unit_test(test_closed_peer_is_named),
        cmocka_unit_test(test_silent_peer_is_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
