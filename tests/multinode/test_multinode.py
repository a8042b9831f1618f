#!/usr/bin/env python3
"""Multi-process replica behaviour, driven through the real binary.

usage: test_multinode.py CASE SHARDSERVE FIXTURES
  late_join         a worker started 20 s before the leader keeps retrying and joins
  flaky_leader      a worker whose first connections meet something that closes them keeps retrying and joins
  kill_worker       kill -9 of a worker mid-generation: the leader fails with a clear error, exit 4,
                    within the comm timeout, and leaves no process behind
  kill_last_rank    the same at tp 2 x pp 2, killing rank 3: the error names rank 3, not the output rank 2 that
                    reported the failed step (session 60: "rank 2 is lost")
  version_mismatch  a worker with another version stamp is refused with both stamps named; a good
                    worker still joins afterwards
  kv_blocks_min     a worker with a smaller KV cache than the leader's (SS_KV_BLOCKS_CAP): the replica uses its
                    count, so its context is what that cache holds (a longer generation stops there, with a
                    warning) and a generation that fits gives the golden
  serve_kill_worker serve --tp 2, kill -9 of the worker mid-stream: the stream's error names rank 1, exit 4
  serve_idle_lost   the same with no request running: the server notices by itself and exits 4
  serve_hung_worker serve --tp 2, the worker stopped (SIGSTOP): a request fails after --comm-timeout with a 503
                    naming rank 1 as silent, exit 4
  serve_group_term  serve --tp 2, SIGTERM to its whole process group mid-stream: the stream ends whole, exit 0
  serve_drain_lost  serve --tp 2, SIGTERM mid-stream, then kill -9 of the worker during the drain: exit 4, not 0
  serve_term_repeat serve --tp 2, SIGTERM mid-stream, then SIGTERM every 5 ms until it exits: the stream ends whole
                    and the exit is 0 (a signal during the teardown killed it: -15)
  silent_conn       connections to the rendezvous that never say hello hold no join up (session 60: 10 s each)
  fd_flood          a flood of silent connections to a leader short of file descriptors: the oldest make room
  worker_restart    at tp 2 x pp 2, a second rank 1 is refused while the first lives; the first is killed before
                    the others come and a restarted rank 1 takes its place (session 60: refused, "already taken")
  load_error_code   a worker that cannot load the model (a relative path from another directory) makes the
                    leader exit 3 with the worker's reason, as a bad model does (session 60: 4, a lost peer)
  load_error_local  the same for a local rank (generate --pp 2) whose LOAD_ERROR and exit both come while the leader
                    still loads: exit 3 with its reason, not 4 for a rank that exited
  load_error_plan   a worker whose model copy its shard plan refuses (an invalid argument): the leader exits 3, the
                    replica's bad model, not 2 (usage)
  lost_after_welcome  rank 1's connection closes right after the leader's welcome: the leader exits 4 at once naming
                    it (session 61: it waited 30 minutes for rank 1's data-plane connection)
  bad_hellos        hellos with bytes after the stamp or a NUL inside it are refused as malformed
  serve_term_rendezvous  SIGTERM to a serving leader that waits for another node: exit 0 at once, no process left
                    (session 60: ignored for the rendezvous' 30 minutes)
  netns             leader and worker in two network namespaces joined by a veth pair, talking
                    only over their own addresses; tokens equal the single-process run
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

CASE, BIN, FIX = sys.argv[1], sys.argv[2], sys.argv[3]
MODEL = os.path.join(FIX, "models", "llama3-gqa")
EXPECT = "1,287,226,330,330,137,485,421"  # golden greedy continuation of [71]
BASE = [BIN, "generate", "--model", MODEL, "--prompt-ids", "71", "--ignore-eos", "--quiet", "--device", "cpu",
        "--threads", "1"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def no_leftovers(tag):
    out = subprocess.run(["pgrep", "-f", tag], capture_output=True, text=True).stdout.split()
    me = str(os.getpid())
    left = [p for p in out if p != me]
    if left:
        subprocess.run(["ps", "-o", "pid,args", "-p", ",".join(left)])
        fail("processes left behind: %s" % left)


def reserve_port():
    """A port bound (SO_REUSEADDR) but not listening: connections to it are refused, and no other
    program's bind(0) gets it meanwhile (a free_port() held for 20 s did, under a parallel ctest)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def start_worker(addr):
    """Rank 1 of 2, waiting up to 60 s for its leader at addr."""
    return subprocess.Popen([BIN, "worker", "--leader-addr", addr, "--rank", "1", "--world", "2",
                             "--join-timeout", "60"], stderr=subprocess.PIPE, text=True)


def lead_with(addr, worker):
    """Runs the leader at addr: the two ranks must generate the golden tokens and the worker exit 0."""
    leader = subprocess.run(BASE + ["--max-tokens", "8", "--tp", "2", "--leader-addr", addr, "--nnodes", "2",
                                    "--gpus-per-node", "1"], capture_output=True, text=True, timeout=60)
    if leader.returncode != 0 or leader.stdout.strip() != EXPECT:
        fail("leader: rc %d out %r err %s" % (leader.returncode, leader.stdout, leader.stderr[-2000:]))
    if worker.wait(timeout=30) != 0:
        fail("worker exit %d" % worker.returncode)


def late_join():
    hold, port = reserve_port()
    addr = "127.0.0.1:%d" % port
    worker = start_worker(addr)
    time.sleep(20)
    hold.close()
    if worker.poll() is not None:
        fail("worker gave up before the leader started: " + worker.stderr.read())
    lead_with(addr, worker)
    print("late join ok")


def flaky_leader():
    """For 3 s something else answers at the leader's address (accepts, writes an HTTP error, closes), then
    the real leader starts there: the worker must keep retrying, say so once, and join."""
    hold, port = reserve_port()
    hold.close()
    addr = "127.0.0.1:%d" % port
    fake = socket.socket()
    fake.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    fake.bind(("127.0.0.1", port))
    fake.listen(8)
    fake.settimeout(0.2)
    worker = start_worker(addr)
    served, t0 = 0, time.time()
    # 3 s, and longer until the worker has met the stand-in once (it may start late on a loaded machine); its
    # join deadline (60 s) leaves the leader time after that
    while time.time() - t0 < 3 or (served == 0 and time.time() - t0 < 30):
        try:
            c, _ = fake.accept()
        except socket.timeout:
            continue
        c.settimeout(1)
        try:
            c.recv(4096)
            c.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass
        c.close()
        served += 1
    fake.close()
    if served == 0:
        fail("the worker never reached the stand-in")
    if worker.poll() is not None:
        fail("worker gave up on a stand-in that closed the connection: " + worker.stderr.read())
    lead_with(addr, worker)
    err = worker.stderr.read()
    if err.count("retrying until the deadline") != 1:
        fail("want one retry warning from the worker, got: " + err[-2000:])
    print("worker joined after %d stand-in connections" % served)


def kill_worker(layout=("--tp", "2"), victim=1):
    tag = "kill-worker-%d" % os.getpid()
    env = dict(os.environ, SHARDSERVE_TEST_TAG=tag)
    # Not --quiet: the leader's "replica ready" line says when generation starts. A fixed sleep after the worker
    # appeared was not enough: loading takes ~2 s on a slow machine, and a worker killed before the replica is up
    # is another error ("killed by signal 9 before the replica was up", or "did not become ready").
    leader = subprocess.Popen([a for a in BASE if a != "--quiet"] + ["--max-tokens", "8100", *layout,
                                                                     "--comm-timeout", "5"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    lines, ready = [], threading.Event()

    def read_stderr():
        for line in leader.stderr:
            lines.append(line)
            if "replica ready" in line:
                ready.set()
        ready.set()  # (ended without it: the checks below say how)

    reader = threading.Thread(target=read_stderr)
    reader.start()
    if not ready.wait(60) or leader.poll() is not None:
        leader.kill()
        reader.join(30)
        fail("the replica never became ready: " + "".join(lines)[-2000:])
    kids = subprocess.run(["pgrep", "-P", str(leader.pid)], capture_output=True, text=True).stdout.split()
    if not kids:
        leader.kill()
        fail("no worker process appeared")
    def rank_of(pid):
        try:
            args = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
        except OSError:
            return -1
        return int(args[args.index(b"--rank") + 1]) if b"--rank" in args else -1
    pick = [k for k in kids if rank_of(k) == victim]
    if not pick:
        leader.kill()
        fail("no worker of rank %d among %s" % (victim, kids))
    os.kill(int(pick[0]), signal.SIGKILL)  # mid-generation (8100 tokens: minutes on the cpu at tp 2)
    t_kill = time.time()
    try:
        leader.wait(timeout=20)
    except subprocess.TimeoutExpired:
        leader.kill()
        fail("leader did not exit within 20 s of the worker's death")
    took = time.time() - t_kill
    reader.join(30)
    err = "".join(lines)
    if leader.returncode != 4:
        fail("leader exit code %d, want 4 (peer lost); stderr: %s" % (leader.returncode, err[-2000:]))
    last = err.strip().splitlines()[-1] if err.strip() else ""
    if "rank %d is lost" % victim not in last:
        fail("the error does not name the lost rank: %s" % last)
    print("leader failed in %.1f s with: %s" % (took, last))
    time.sleep(0.5)
    out = subprocess.run(["pgrep", "-P", str(leader.pid)], capture_output=True, text=True).stdout.strip()
    if out:
        fail("children of the leader are left: " + out)


def version_mismatch():
    port = free_port()
    addr = "127.0.0.1:%d" % port
    leader = subprocess.Popen(BASE + ["--max-tokens", "8", "--tp", "2", "--leader-addr", addr, "--nnodes", "2",
                                      "--gpus-per-node", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    bad = subprocess.run([BIN, "worker", "--leader-addr", addr, "--rank", "1", "--world", "2",
                          "--test-version-stamp", "shardserve 9.9.9; engine format 7"],
                         capture_output=True, text=True, timeout=60)
    if bad.returncode != 3:
        fail("mismatched worker exit %d, want 3; %s" % (bad.returncode, bad.stderr))
    if "9.9.9" not in bad.stderr or "shardserve 0." not in bad.stderr:
        fail("refusal does not name both stamps: " + bad.stderr)
    good = subprocess.Popen([BIN, "worker", "--leader-addr", addr, "--rank", "1", "--world", "2"],
                            stderr=subprocess.PIPE, text=True)
    out, err = leader.communicate(timeout=60)
    good.wait(timeout=30)
    if leader.returncode != 0 or out.strip() != EXPECT:
        fail("leader after refusal: rc %d out %r err %s" % (leader.returncode, out, err[-2000:]))
    print("refused:", bad.stderr.strip().splitlines()[-1])


def kv_blocks_min():
    def run(max_tokens):
        addr = "127.0.0.1:%d" % free_port()
        worker = subprocess.Popen([BIN, "worker", "--leader-addr", addr, "--rank", "1", "--world", "2",
                                   "--join-timeout", "60"], stderr=subprocess.PIPE, text=True,
                                  env=dict(os.environ, SS_KV_BLOCKS_CAP="2"))
        leader = subprocess.run(BASE + ["--max-tokens", str(max_tokens), "--tp", "2", "--leader-addr", addr,
                                        "--nnodes", "2", "--gpus-per-node", "1"],
                                capture_output=True, text=True, timeout=60)
        _, werr = worker.communicate(timeout=30)
        return leader, worker.returncode, werr

    # 1 + 40 tokens need 3 blocks of 16; rank 1 has 2 (the leader, ~8 full-length sequences' worth): the replica's
    # context is what the smallest cache holds (32 tokens), so generate stops after 31 and says so
    leader, wrc, werr = run(40)
    if leader.returncode != 0 or wrc != 0 or "does not fit the context of 32 after the 1-token prompt" not in leader.stderr:
        fail("a generation beyond rank 1's cache: rc %d worker %d err %s / worker %s" % (
            leader.returncode, wrc, leader.stderr[-2000:], werr[-1500:]))
    if "rank 1's (rank 0 has" not in leader.stderr:
        fail("the leader does not say whose count it uses: " + leader.stderr[-2000:])
    if "step" in werr and "block" in werr:
        fail("the worker saw a step with blocks it does not have: " + werr[-1500:])
    refusal = [x for x in leader.stderr.splitlines() if "does not fit" in x][0]
    leader, wrc, werr = run(8)  # 9 tokens: 1 block
    if leader.returncode != 0 or leader.stdout.strip() != EXPECT or wrc != 0:
        fail("a generation that fits: rc %d out %r worker %d err %s" % (leader.returncode, leader.stdout, wrc,
                                                                          leader.stderr[-2000:]))
    print("capped:", refusal)


LOUD = [x for x in BASE if x != "--quiet"]  # the leader's info lines say who joined


class Lines:
    """Collects a process's stderr lines in a thread, so that a test can wait for one while the process runs."""

    def __init__(self, proc):
        self.lines, self.cv = [], threading.Condition()
        threading.Thread(target=self._read, args=(proc.stderr,), daemon=True).start()

    def _read(self, f):
        for line in f:
            with self.cv:
                self.lines.append(line)
                self.cv.notify_all()
        with self.cv:
            self.lines.append(None)
            self.cv.notify_all()

    def wait_for(self, text, count=1, timeout=60):
        with self.cv:
            ok = self.cv.wait_for(lambda: sum(1 for x in self.lines if x and text in x) >= count or None in self.lines,
                                  timeout)
            if not ok or sum(1 for x in self.lines if x and text in x) < count:
                fail("no %d lines with %r; got: %s" % (count, text, "".join(x for x in self.lines if x)[-2000:]))

    def text(self):
        with self.cv:
            return "".join(x for x in self.lines if x)


def flood_then_join(n, then=None, preexec_fn=None):
    """A leader waiting for rank 1, n connections to it that never say hello, then the real worker: the run must give
    the golden tokens. then: a log line to wait for before the worker starts. Returns the leader's log."""
    addr = "127.0.0.1:%d" % free_port()
    leader = subprocess.Popen(LOUD + ["--max-tokens", "8", "--tp", "2", "--leader-addr", addr, "--nnodes", "2",
                                      "--gpus-per-node", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, preexec_fn=preexec_fn)
    log = Lines(leader)
    log.wait_for("waiting for 1 ranks")
    silent = [socket.create_connection(("127.0.0.1", int(addr.split(":")[1]))) for _ in range(n)]
    if then:
        log.wait_for(then)
    worker = start_worker(addr)
    out = leader.stdout.read()
    leader.wait(timeout=60)
    for c in silent:
        c.close()
    worker.wait(timeout=30)
    if leader.returncode != 0 or out.strip() != EXPECT or worker.returncode != 0:
        fail("leader rc %d out %r worker %d; %s" % (leader.returncode, out, worker.returncode, log.text()[-2000:]))
    return log.text()


def silent_conn():
    err = flood_then_join(3)
    if "rank 1 joined" not in err or "dropped a connection" in err:
        fail("the silent connections held the join up: " + err[-2000:])
    print("joined past 3 silent connections")


def fd_flood():
    """40 silent connections to a leader limited to 32 file descriptors: the oldest make room for newer ones, and the
    worker that comes after them joins (session 61: "Too many open files" ended the rendezvous)."""
    import resource
    flood_then_join(40, "out of file descriptors", lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32)))
    print("joined past a flood under a limit of 32 descriptors")


def worker_restart():
    addr = "127.0.0.1:%d" % free_port()
    leader = subprocess.Popen(LOUD + ["--max-tokens", "8", "--tp", "2", "--pp", "2", "--leader-addr", addr,
                                      "--nnodes", "4", "--gpus-per-node", "1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    log = Lines(leader)

    def worker(rank):
        return subprocess.Popen([BIN, "worker", "--leader-addr", addr, "--rank", str(rank), "--world", "4",
                                 "--join-timeout", "60"], stderr=subprocess.PIPE, text=True)

    first = worker(1)
    log.wait_for("rank 1 joined")
    dup = subprocess.run([BIN, "worker", "--leader-addr", addr, "--rank", "1", "--world", "4"], capture_output=True,
                         text=True, timeout=60)
    if dup.returncode != 3 or "rank 1 is already taken (by the worker connected from 127.0.0.1)" not in dup.stderr:
        fail("a second rank 1 while the first lives: rc %d %s" % (dup.returncode, dup.stderr[-1000:]))
    first.kill()
    first.wait()
    again = worker(1)
    log.wait_for("rank 1 joined", count=2)
    others = [worker(2), worker(3)]
    out = leader.stdout.read()
    leader.wait(timeout=60)
    rcs = [w.wait(timeout=30) for w in [again] + others]
    err = log.text()
    if leader.returncode != 0 or out.strip() != EXPECT or rcs != [0, 0, 0]:
        fail("leader rc %d out %r workers %s; %s" % (leader.returncode, out, rcs, err[-2000:]))
    if "rank 1 (from 127.0.0.1) left the rendezvous" not in err:
        fail("the leader did not say rank 1 left: " + err[-2000:])
    print("a restarted rank 1 took its place; a duplicate was refused")


def load_error_code():
    addr = "127.0.0.1:%d" % free_port()
    rel = os.path.relpath(MODEL, FIX)
    worker = subprocess.Popen([BIN, "worker", "--leader-addr", addr, "--rank", "1", "--world", "2", "--join-timeout",
                               "60"], stderr=subprocess.PIPE, text=True, cwd="/")
    leader = subprocess.run([x if x != MODEL else rel for x in BASE] + ["--max-tokens", "8", "--tp", "2",
                            "--leader-addr", addr, "--nnodes", "2", "--gpus-per-node", "1"], capture_output=True,
                            text=True, timeout=60, cwd=FIX)
    werr = worker.communicate(timeout=30)[1]
    want = "rank 1 failed to load: %s/config.json" % rel
    if leader.returncode != 3 or want not in leader.stderr or worker.returncode != 3:
        fail("leader rc %d (want 3) worker rc %d (want 3); %s / %s" % (leader.returncode, worker.returncode,
                                                                      leader.stderr[-1500:], werr[-1000:]))
    print("exit 3:", [x for x in leader.stderr.splitlines() if "failed to load" in x][-1])


def load_error_plan():
    """A worker whose copy of the model (a relative path from another directory) has an intermediate_size that tp 2
    does not divide: its shard plan fails with an invalid argument, which is the replica's bad model (exit 3), not a
    usage error of the leader's command line (session 61: exit 2)."""
    import json
    import shutil
    import tempfile
    tmp = tempfile.mkdtemp(prefix="ss-plan-")
    try:
        for side in ("lead", "work"):
            os.mkdir(os.path.join(tmp, side))
            shutil.copytree(MODEL, os.path.join(tmp, side, "m"))
        cfg_path = os.path.join(tmp, "work", "m", "config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        cfg["intermediate_size"] += 1
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        addr = "127.0.0.1:%d" % free_port()
        worker = subprocess.Popen([BIN, "worker", "--leader-addr", addr, "--rank", "1", "--world", "2",
                                   "--join-timeout", "60"], stderr=subprocess.PIPE, text=True,
                                  cwd=os.path.join(tmp, "work"))
        leader = subprocess.run([x if x != MODEL else "m" for x in BASE] + ["--max-tokens", "8", "--tp", "2",
                                "--leader-addr", addr, "--nnodes", "2", "--gpus-per-node", "1"], capture_output=True,
                                text=True, timeout=60, cwd=os.path.join(tmp, "lead"))
        werr = worker.communicate(timeout=30)[1]
        want = "rank 1 failed to load: tp 2 does not divide intermediate_size %d" % cfg["intermediate_size"]
        if leader.returncode != 3 or want not in leader.stderr:
            fail("leader rc %d (want 3); %s / %s" % (leader.returncode, leader.stderr[-1500:], werr[-1000:]))
        print("exit 3:", [x for x in leader.stderr.splitlines() if "failed to load" in x][-1])
    finally:
        shutil.rmtree(tmp)


def children(pid):
    """The child processes of pid, whichever of its threads started them."""
    kids = []
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def load_error_local():
    """generate --pp 2 on a model that lacks the last stage's model.norm.weight: the local rank 1 sends its LOAD_ERROR
    and exits while the leader is held (SIGSTOP from the rank's "joined" line, after the welcome, until the rank has
    exited). The leader must exit 3 with the rank's reason, not 4 for a local rank that exited (helper-74)."""
    import shutil
    import struct
    import tempfile
    tmp = tempfile.mkdtemp(prefix="ss-nonorm-")
    try:
        model = os.path.join(tmp, "m")
        shutil.copytree(MODEL, model)
        with open(os.path.join(model, "model.safetensors"), "r+b") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            head = f.read(n)
            assert head.count(b'"model.norm.weight"') == 1
            f.seek(8)
            f.write(head.replace(b'"model.norm.weight"', b'"model.norm.weighx"'))  # the same length
        leader = subprocess.Popen([x if x != MODEL else model for x in LOUD] + ["--max-tokens", "4", "--pp", "2"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = Lines(leader)
        lines.wait_for("rank 1/2 joined the leader")
        os.kill(leader.pid, signal.SIGSTOP)
        kids, deadline = children(leader.pid), time.time() + 20
        while kids and time.time() < deadline and proc_state(kids[0]) not in ("Z", "gone"):
            time.sleep(0.01)
        os.kill(leader.pid, signal.SIGCONT)
        leader.wait(timeout=60)
        err = lines.text()
        want = "rank 1 failed to load: tensor 'model.norm.weight' is missing from the checkpoint"
        if leader.returncode != 3 or want not in err or not kids or proc_state(kids[0]) != "gone":
            fail("leader rc %d (want 3), rank 1 %s: %s" % (leader.returncode, kids, err[-1500:]))
        print("exit 3:", [x for x in err.splitlines() if "failed to load" in x][-1])
    finally:
        shutil.rmtree(tmp)


def recv_exact(sock, n):
    got = b""
    while len(got) < n:
        d = sock.recv(n - len(got))
        if not d:
            fail("connection closed after %d of %d bytes" % (len(got), n))
        got += d
    return got


def lost_after_welcome():
    lport, pport = free_port(), free_port()
    leader = subprocess.Popen(BASE + ["--max-tokens", "8", "--tp", "2", "--leader-addr", "127.0.0.1:%d" % lport,
                                      "--nnodes", "2", "--gpus-per-node", "1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    proxy = socket.socket()
    proxy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    proxy.bind(("127.0.0.1", pport))
    proxy.listen(1)
    proxy.settimeout(30)
    worker = start_worker("127.0.0.1:%d" % pport)
    try:
        c, _ = proxy.accept()
        c.settimeout(30)
        t0 = time.time()
        while True:  # the leader may not listen yet
            try:
                u = socket.create_connection(("127.0.0.1", lport), timeout=30)
                break
            except OSError:
                if time.time() - t0 > 30:
                    fail("the leader never listened")
                time.sleep(0.2)
        hdr = recv_exact(c, 12)
        u.sendall(hdr + recv_exact(c, int.from_bytes(hdr[4:], "little")))  # the worker's hello
        welcome = recv_exact(u, 12)
        u.close()  # rank 1 "dies" with the welcome on its way
        c.close()
        try:
            out, err = leader.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            leader.kill()
            fail("the leader waits for a rank that left after its welcome")
    finally:
        worker.kill()
        worker.wait()
    if int.from_bytes(welcome[:4], "little") != 3 or leader.returncode != 4 or "rank 1 is lost" not in err:
        fail("message %d; leader rc %d (want 4) %s" % (int.from_bytes(welcome[:4], "little"), leader.returncode,
                                                       err[-1500:]))
    print("leader:", err.strip().splitlines()[-1])


def capture_hello():
    """A real worker's hello message (header and payload), taken by a listener that stands in for the leader."""
    fake = socket.socket()
    fake.bind(("127.0.0.1", 0))
    fake.listen(1)
    fake.settimeout(30)
    worker = start_worker("127.0.0.1:%d" % fake.getsockname()[1])
    try:
        c, _ = fake.accept()
        c.settimeout(30)
        hdr = recv_exact(c, 12)
        payload = recv_exact(c, int.from_bytes(hdr[4:], "little"))
        c.close()
    finally:
        worker.kill()
        worker.wait()
        fake.close()
    return payload


def bad_hellos():
    """Hellos with bytes after the stamp, or a NUL inside it, are refused as malformed (session 61: both joined, as
    the stamp compared equal up to the NUL); the real worker then joins."""
    payload = capture_hello()
    stamp_len = int.from_bytes(payload[12:16], "little")
    head, stamp = payload[:12], payload[16:16 + stamp_len]
    trailing = payload + b"xyz"
    nul = head + (stamp_len + 4).to_bytes(4, "little") + stamp + b"\0xyz"
    addr = "127.0.0.1:%d" % free_port()
    leader = subprocess.Popen(BASE + ["--max-tokens", "8", "--tp", "2", "--leader-addr", addr, "--nnodes", "2",
                                      "--gpus-per-node", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    for name, body in (("bytes after the stamp", trailing), ("a NUL in the stamp", nul)):
        t0 = time.time()
        while True:
            try:
                c = socket.create_connection(("127.0.0.1", int(addr.split(":")[1])), timeout=30)
                break
            except OSError:
                if time.time() - t0 > 30:
                    fail("the leader never listened")
                time.sleep(0.2)
        c.sendall((1).to_bytes(4, "little") + len(body).to_bytes(8, "little") + body)
        hdr = recv_exact(c, 12)
        text = recv_exact(c, int.from_bytes(hdr[4:], "little")).decode(errors="replace")
        c.close()
        if int.from_bytes(hdr[:4], "little") != 2 or "malformed hello" not in text:
            fail("a hello with %s: message %d %r, want a refusal" % (name, int.from_bytes(hdr[:4], "little"), text))
    worker = start_worker(addr)
    out, err = leader.communicate(timeout=60)
    worker.wait(timeout=30)
    if leader.returncode != 0 or out.strip() != EXPECT or worker.returncode != 0:
        fail("after the refusals: leader rc %d out %r worker %d; %s" % (leader.returncode, out, worker.returncode,
                                                                          err[-1500:]))
    print("malformed hellos refused; the real worker joined")


def serve_term_rendezvous():
    port, mport, rdzv = free_port(), free_port(), free_port()
    model = os.path.join(FIX, "models", "e2e-llama3-tok")
    srv = subprocess.Popen([BIN, "serve", "--model", model, "--tp", "2", "--pp", "2", "--nnodes", "2",
                            "--leader-addr", "127.0.0.1:%d" % rdzv, "--device", "cpu", "--threads", "1",
                            "--port", str(port), "--metrics-port", str(mport)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    log = Lines(srv)
    log.wait_for("rank 1 joined")  # the local rank the leader started; ranks 2 and 3 (node 1) never come
    srv.send_signal(signal.SIGTERM)  # to the leader alone, as a pod's deletion does
    try:
        srv.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(srv.pid, signal.SIGKILL)
        fail("the leader ignored SIGTERM while waiting for node 1: " + log.text()[-2000:])
    err = log.text()
    if srv.returncode != 0 or "stopped while waiting for the replica's 4 ranks" not in err:
        fail("exit %d (want 0); %s" % (srv.returncode, err[-2000:]))
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-g", str(srv.pid)], capture_output=True, text=True).stdout.strip()
    if left:
        subprocess.run(["ps", "-o", "pid,args", "-g", str(srv.pid)])
        os.killpg(srv.pid, signal.SIGKILL)
        fail("processes left in the group: " + left)
    print("SIGTERM during the rendezvous: exit 0, nothing left")


def sh(*cmd):
    r = subprocess.run(list(cmd), capture_output=True, text=True)
    if r.returncode != 0:
        fail("%s: %s" % (" ".join(cmd), r.stderr))
    return r.stdout


def netns():
    tag = "ss%d" % (os.getpid() % 100000)
    a, b = tag + "a", tag + "b"
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", tag + "0", "type", "veth", "peer", "name", tag + "1")
        sh("ip", "link", "set", tag + "0", "netns", a)
        sh("ip", "link", "set", tag + "1", "netns", b)
        sh("ip", "-n", a, "addr", "add", "10.231.7.1/24", "dev", tag + "0")
        sh("ip", "-n", b, "addr", "add", "10.231.7.2/24", "dev", tag + "1")
        for ns, dev in ((a, tag + "0"), (b, tag + "1")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        addr = "10.231.7.1:29600"
        # not --quiet: node 1's info lines say which address it reached the leader at
        common = [x for x in BASE if x != "--quiet"] + ["--max-tokens", "8", "--tp", "2", "--pp", "2", "--nnodes",
                                                        "2", "--leader-addr", addr]
        leader = subprocess.Popen(["ip", "netns", "exec", a] + common, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        node1 = subprocess.Popen(["ip", "netns", "exec", b] + common + ["--node-rank", "1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = leader.communicate(timeout=90)
        o1, e1 = node1.communicate(timeout=30)
        if leader.returncode != 0 or out.strip() != EXPECT:
            fail("leader in %s: rc %d out %r err %s" % (a, leader.returncode, out, err[-3000:]))
        if node1.returncode != 0:
            fail("node 1 in %s: rc %d err %s" % (b, node1.returncode, e1[-3000:]))
        if "joined the leader at 10.231.7.1:29600" not in e1:
            fail("node 1 did not reach the leader over the veth address: " + e1[-2000:])
        print("netns: 4 ranks on two hosts (10.231.7.1, 10.231.7.2) gave", out.strip())
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


def start_server(extra=(), max_seq_len=256, **kw):
    """serve --tp 2 of the tokenizer fixture on cpu; returns (process, API port) once it is ready. free_port() only
    finds ports free now: when another process (a parallel ctest job) takes one first, the server exits with "cannot
    listen on ..." and starts again on new ports (as serve_harness.Server does)."""
    model = os.path.join(FIX, "models", "e2e-llama3-tok")
    for attempt in range(5):
        port, mport = free_port(), free_port()
        srv = subprocess.Popen([BIN, "serve", "--model", model, "--tp", "2", "--device", "cpu", "--threads", "1",
                                "--port", str(port), "--metrics-port", str(mport), "--max-seq-len", str(max_seq_len)] +
                               list(extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
        t0 = time.time()
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return srv, port
            except OSError:
                pass
            if srv.poll() is not None:
                err = srv.stderr.read()
                if "cannot listen on" in err and attempt < 4:
                    break
                fail("server exited (%d) before it was ready: %s" % (srv.returncode, err[-2000:]))
            if time.time() - t0 > 60:
                os.killpg(srv.pid, signal.SIGKILL) if kw.get("start_new_session") else srv.kill()
                fail("server never became ready: " + srv.stderr.read()[-2000:])
            time.sleep(0.3)
    fail("no free ports after 5 tries")


def open_stream(port, max_tokens=240):
    """Starts a streamed completion; returns the socket and the bytes read up to its first event."""
    import json
    body = json.dumps({"prompt": "hello", "max_tokens": max_tokens, "ignore_eos": True, "stream": True})
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
    got = b""
    while b"data: " not in got:
        d = s.recv(4096)
        if not d:
            break
        got += d
    return s, got


def read_rest(s, got):
    while not got.endswith(b"0\r\n\r\n"):
        d = s.recv(65536)
        if not d:
            break
        got += d
    s.close()
    return got.decode(errors="replace")


def await_exit(srv, code, what):
    try:
        srv.wait(timeout=30)
    except subprocess.TimeoutExpired:
        srv.kill()
        fail("server did not exit after " + what)
    err = srv.stderr.read()
    if srv.returncode != code:
        fail("server exit code %d, want %d; %s" % (srv.returncode, code, err[-1500:]))
    left = subprocess.run(["pgrep", "-P", str(srv.pid)], capture_output=True, text=True).stdout.strip()
    if left:
        fail("processes left: " + left)
    return err


def serve_kill_worker():
    """serve --tp 2: kill -9 the worker while a stream is in flight; the stream ends with an error naming rank 1 and
    the server exits 4 (so the orchestrator restarts the replica), leaving no process behind."""
    srv, port = start_server(["--comm-timeout", "5"])
    kids = subprocess.run(["pgrep", "-P", str(srv.pid)], capture_output=True, text=True).stdout.split()
    if not kids:
        fail("serve --tp 2 started no worker process")
    s, got = open_stream(port)
    os.kill(int(kids[0]), signal.SIGKILL)
    text = read_rest(s, got)
    errors = [l for l in text.split("\n") if l.startswith("data: ") and '"error"' in l]
    if not errors or "rank 1" not in errors[-1]:
        fail("the stream did not end with an error naming rank 1: %r" % text[-800:])
    await_exit(srv, 4, "losing a rank")
    print("stream failed with: %s; server exited 4" % errors[-1][:200])


def serve_idle_lost():
    """serve --tp 2: kill -9 the worker while no request runs; the server notices by itself, says which rank and exits
    4 (session 60: an idle cpu replica noticed only at the next request, which failed)."""
    srv, port = start_server()
    kids = subprocess.run(["pgrep", "-P", str(srv.pid)], capture_output=True, text=True).stdout.split()
    if not kids:
        fail("serve --tp 2 started no worker process")
    os.kill(int(kids[0]), signal.SIGKILL)
    err = await_exit(srv, 4, "losing a rank while idle")
    if "rank 1 is lost (its control connection closed)" not in err:
        fail("the log does not name the lost rank: " + err[-1500:])
    print("idle server exited 4 on its own")


def serve_hung_worker():
    """serve --tp 2 --comm-timeout 2: the worker stops (SIGSTOP: alive, connections open, silent); the next request
    fails after the comm timeout with a 503 naming rank 1 as the one that sent nothing, and the server exits 4
    (session 60: "rank 0: layer 2: timed out", a 504 that named no rank)."""
    import json
    import urllib.error
    import urllib.request
    srv, port = start_server(["--comm-timeout", "2"])
    kids = subprocess.run(["pgrep", "-P", str(srv.pid)], capture_output=True, text=True).stdout.split()
    if not kids:
        fail("serve --tp 2 started no worker process")
    os.kill(int(kids[0]), signal.SIGSTOP)
    body = json.dumps({"prompt": "hello", "max_tokens": 8}).encode()
    status, text = 0, ""
    try:
        urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%d/v1/completions" % port, data=body,
                                                      headers={"Content-Type": "application/json"}), timeout=60)
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode(errors="replace")
    except Exception as e:
        text = str(e)
    if status != 503 or "rank 1 sent nothing before the comm timeout" not in text:
        os.kill(int(kids[0]), signal.SIGKILL)
        fail("request to a replica with a stopped rank: status %d body %r" % (status, text[:500]))
    await_exit(srv, 4, "a rank stopped answering")
    print("request failed with %d: %s; server exited 4" % (status, text[:200]))


def serve_group_term():
    """serve --tp 2 in its own process group, SIGTERM to the whole group (Ctrl-C, systemd's control-group kill) with
    a stream in flight: the worker follows the leader's drain, so the stream ends whole ([DONE], finish length, no
    error) and the server exits 0, leaving no process (session 60: the worker died at once, the stream failed)."""
    import json
    srv, port = start_server(start_new_session=True)
    s, got = open_stream(port)
    os.killpg(srv.pid, signal.SIGTERM)  # the stream is in flight: its first event came
    text = read_rest(s, got)
    try:
        srv.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(srv.pid, signal.SIGKILL)
        fail("server did not exit after the drain")
    events = [l[6:] for l in text.split("\n") if l.startswith("data: ")]
    ends = [json.loads(e)["choices"][0]["finish_reason"] for e in events if e.startswith("{") and
            json.loads(e).get("choices") and json.loads(e)["choices"][0].get("finish_reason")]
    if "error" in text or not events or events[-1].strip() != "[DONE]" or ends != ["length"]:
        fail("the stream did not end whole: %r ... %r" % (text[:300], text[-500:]))
    if srv.returncode != 0:
        fail("server exit code %d, want 0; %s" % (srv.returncode, srv.stderr.read()[-1500:]))
    left = subprocess.run(["pgrep", "-g", str(srv.pid)], capture_output=True, text=True).stdout.strip()
    if left:
        fail("processes left in the group: " + left)
    print("stream ended whole after the group's SIGTERM; server exited 0")


def serve_drain_lost():
    """serve --tp 2: SIGTERM with a stream in flight, then kill -9 of the worker during the drain. The stream ends with
    an error naming rank 1 and the server exits 4: a lost rank is a lost rank while draining too (helper-81: the
    drain's own state hid it, exit 0, and the orchestrator did not know the replica had failed)."""
    srv, port = start_server(["--comm-timeout", "5"], max_seq_len=4096)  # a stream that outlasts the kill
    kids = subprocess.run(["pgrep", "-P", str(srv.pid)], capture_output=True, text=True).stdout.split()
    if not kids:
        fail("serve --tp 2 started no worker process")
    s, got = open_stream(port, max_tokens=3000)
    srv.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    os.kill(int(kids[0]), signal.SIGKILL)
    text = read_rest(s, got)
    errors = [l for l in text.split("\n") if l.startswith("data: ") and '"error"' in l]
    if not errors or "rank 1" not in errors[-1]:
        fail("the stream did not end with an error naming rank 1: %r" % text[-800:])
    err = await_exit(srv, 4, "losing a rank while draining")
    if "lost a rank while draining" not in err:
        fail("the log does not say the rank was lost while draining: " + err[-1500:])
    print("drain with a lost rank: stream failed naming rank 1; server exited 4")


def serve_term_repeat():
    """serve --tp 2: SIGTERM with a stream in flight, then SIGTERM every 5 ms until the process exits. The drain runs
    as for one signal: the stream ends whole and the exit code is 0 (helper-81: a signal during the teardown, after
    the signal events were freed, killed the server: exit -15)."""
    import json
    srv, port = start_server()
    s, got = open_stream(port, max_tokens=200)
    srv.send_signal(signal.SIGTERM)
    text = ""
    import threading
    reader = threading.Thread(target=lambda: globals().__setitem__("_text", read_rest(s, got)))
    reader.start()
    sent = 0
    while srv.poll() is None and sent < 20000:
        try:
            srv.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            break
        sent += 1
        time.sleep(0.005)
    reader.join(60)
    text = globals().get("_text", "")
    events = [l[6:] for l in text.split("\n") if l.startswith("data: ")]
    if '"error"' in text or not events or events[-1].strip() != "[DONE]":
        fail("the stream did not end whole: %r" % text[-500:])
    await_exit(srv, 0, "SIGTERM every 5 ms")
    print("%d SIGTERMs: the stream ended whole; server exited 0" % sent)


CASES = {
    "late_join": late_join, "flaky_leader": flaky_leader, "kill_worker": kill_worker,
    "kill_last_rank": lambda: kill_worker(("--tp", "2", "--pp", "2"), 3), "version_mismatch": version_mismatch,
    "kv_blocks_min": kv_blocks_min, "netns": netns, "silent_conn": silent_conn, "worker_restart": worker_restart,
    "load_error_code": load_error_code, "load_error_local": load_error_local,
    "load_error_plan": load_error_plan, "serve_term_rendezvous": serve_term_rendezvous,
    "lost_after_welcome": lost_after_welcome, "bad_hellos": bad_hellos,
    "fd_flood": fd_flood,
    "serve_kill_worker": serve_kill_worker, "serve_idle_lost": serve_idle_lost, "serve_hung_worker": serve_hung_worker,
    "serve_group_term": serve_group_term, "serve_drain_lost": serve_drain_lost, "serve_term_repeat": serve_term_repeat,
}
CASES[CASE]()
print("1 passed, 0 failed")
