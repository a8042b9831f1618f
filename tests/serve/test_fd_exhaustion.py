#!/usr/bin/env python3
"""test_fd_exhaustion.py — `shardserve serve` out of file descriptors: under a low `ulimit -n`, more idle
connections than it can accept must not make it spin on accept() (CPU time and log lines are counted, not
timed) and, once they close, it serves again. Usage: test_fd_exhaustion.py BINARY FIXTURES_DIR"""
import os
import resource
import socket
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_harness import Server  # noqa: E402

BINARY, FIXTURES = sys.argv[1:3]
MODEL_DIR = os.path.join(FIXTURES, "models", "e2e-llama3-tok")
FD_LIMIT = 48      # the server's RLIMIT_NOFILE (it holds about a dozen descriptors once ready)
IDLE_CONNS = 60    # more than it can accept under FD_LIMIT; the rest wait in the listen backlog
WINDOW_S = 2.0     # how long the exhausted server is watched
MAX_CPU_S = 0.5    # user+system CPU allowed over the window (a spinning accept loop uses all of it)
MAX_LOG_LINES = 50  # log lines allowed over the window (a spinning loop writes a warning per accept try)


def limit_fds():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def cpu_seconds(pid):
    """utime + stime of the process (fields 14 and 15 of /proc/PID/stat), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def main():
    # This process holds the idle connections itself: make sure its own limit allows them.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE_CONNS + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    # --conn-timeout keeps the accepted idle connections open for the whole test.
    srv = Server(BINARY, MODEL_DIR, ["--max-seq-len", "256", "--conn-timeout", "120"], preexec_fn=limit_fds)
    pid = srv.proc.pid
    conns = []
    try:
        ready_fds = open_fds(pid)
        assert ready_fds < FD_LIMIT - 10, "the server already holds %d descriptors when ready" % ready_fds
        for _ in range(IDLE_CONNS):
            conns.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
        # The server accepts until its table is full; the connections left over make accept() fail.
        deadline = time.time() + 30
        while open_fds(pid) < FD_LIMIT and time.time() < deadline:
            time.sleep(0.05)
        assert open_fds(pid) >= FD_LIMIT, "the server never ran out of descriptors (%d open)" % open_fds(pid)
        time.sleep(0.3)
        cpu0, lines0 = cpu_seconds(pid), log_lines(srv.log.name)
        time.sleep(WINDOW_S)
        cpu1, lines1 = cpu_seconds(pid), log_lines(srv.log.name)
        assert srv.proc.poll() is None, "the server exited: " + srv.log_text()[-2000:]
        cpu, lines = cpu1 - cpu0, lines1 - lines0
        print("out of descriptors for %.1f s: %.2f s CPU, %d log lines" % (WINDOW_S, cpu, lines), flush=True)
        assert cpu < MAX_CPU_S, "the server spent %.2f s of CPU in %.1f s while out of descriptors" % (cpu, WINDOW_S)
        assert lines < MAX_LOG_LINES, "%d log lines in %.1f s while out of descriptors" % (lines, WINDOW_S)
        text = srv.log_text()
        assert "open-file limit (RLIMIT_NOFILE, ulimit -n) of %d is reached" % FD_LIMIT in text, text[-2000:]
        # Once the idle clients go, the server serves again (the waiting connections are accepted, see EOF).
        for c in conns:
            c.close()
        conns = []
        st, _, j, _ = srv.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 4}, timeout=60)
        assert st == 200 and j["usage"]["completion_tokens"] == 4, (st, j)
        assert srv.request("GET", "/metrics", port=srv.mport, timeout=60)[0] == 200
    finally:
        for c in conns:
            c.close()
        rc = srv.stop()
    assert rc == 0, (rc, srv.log_text()[-2000:])
    print("fd exhaustion: no busy loop, serving again afterwards")


if __name__ == "__main__":
    main()
