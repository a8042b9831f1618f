"""serve_harness.py — starts the real `shardserve serve` binary on free ports, waits for readiness,
talks raw HTTP to it, checks the Prometheus text format, and stops it with SIGTERM (exit code checked)."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time



failures = []  # the names of the checks that failed, in the test script's process


def check(name):
    """Decorator: runs the function at once as the check `name`, prints ok/FAIL, records a failure in
    `failures` and goes on (a script reports every failing check, then fails)."""
    def wrap(fn):
        try:
            fn()
            print("ok   " + name, flush=True)
        except Exception as e:
            import traceback
            traceback.print_exc()
            print("FAIL %s: %r" % (name, e), flush=True)
            failures.append(name)
        return fn
    return wrap


def stop_checked(srv, what="server"):
    """Stops srv (SIGTERM); a non-zero exit code is a failure, with the end of its log printed."""
    rc = srv.stop()
    if rc != 0:
        print(srv.log_text()[-3000:])
        failures.append("%s exit code %r" % (what, rc))


def finish(done_message):
    """Exits 1 naming every failed check, else prints done_message."""
    if failures:
        print("FAILED: %s" % ", ".join(failures))
        sys.exit(1)
    print(done_message)

def free_ports(n):
    """n distinct ports that are free now (all held at once while picking, so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.socket())
            socks[-1].bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Server:
    PORT_ATTEMPTS = 5

    def __init__(self, binary, model, extra=(), ready_timeout=180, preexec_fn=None, env=None):
        """preexec_fn: run in the server process before exec (e.g. to lower its resource limits); env: variables
        added to this process's environment for the server."""
        self.preexec_fn = preexec_fn
        self.env = env or {}
        self.log = tempfile.NamedTemporaryFile(prefix="shardserve-", suffix=".log", delete=False)
        self.ready_timeout = ready_timeout
        deadline = time.time() + ready_timeout
        # free_ports() only finds ports that are free *now*: another process (a parallel ctest job, or any
        # client's ephemeral port) may take one before the server binds it. The server then exits with
        # "cannot listen on ..."; pick new ports and start again.
        for attempt in range(self.PORT_ATTEMPTS):
            self.port, self.mport = free_ports(2)
            if self._start(binary, model, extra, deadline, last=attempt == self.PORT_ATTEMPTS - 1):
                return

    def _start(self, binary, model, extra, deadline, last):
        """Starts the server and waits until it is ready; False when it could not bind its ports."""
        self.log.seek(0)
        self.log.truncate()
        args = [binary, "serve", "--model", model, "--device", "cpu", "--host", "127.0.0.1",
                "--port", str(self.port), "--metrics-port", str(self.mport)] + list(extra)
        env = dict(os.environ, **self.env)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=self.preexec_fn)
        while time.time() < deadline:
            if self.proc.poll() is not None:
                text = self.log_text()
                if "cannot listen on" in text and not last:
                    return False
                raise RuntimeError("server exited early (%d):\n%s" % (self.proc.returncode, text))
            try:
                if self.request("GET", "/v2/health/ready", timeout=2)[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.2)
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError("server not ready after %ds:\n%s" % (self.ready_timeout, self.log_text()))

    def log_text(self):
        with open(self.log.name, "r", errors="replace") as f:
            return f.read()[-20000:]

    def request(self, method, path, body=None, headers=None, port=None, timeout=120):
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            if isinstance(body, str):
                body = body.encode()
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def post(self, path, body, headers=None, timeout=120):
        st, h, data = self.request("POST", path, body, headers, timeout=timeout)
        try:
            j = json.loads(data) if data else None
        except ValueError:
            j = None
        return st, h, j, data

    def metrics(self):
        st, _, data = self.request("GET", "/metrics", port=self.mport)
        assert st == 200, st
        return data.decode()

    def stop(self, timeout=60):
        """SIGTERM, then the exit code (0 expected)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "timeout"
        if rc == 0:
            os.unlink(self.log.name)  # keep the log of a failed run for inspection
        return rc


def sample_value(text, name_with_labels):
    for line in text.splitlines():
        if line.startswith(name_with_labels + " "):
            return float(line.split(" ")[-1])
    raise KeyError(name_with_labels)


_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def check_prometheus_text(text):
    """Checks the text exposition format 0.0.4 as `promtool check metrics` would for our output:
    HELP/TYPE once per family before its samples, valid names and labels, numeric values, histograms
    with cumulative le buckets ending in +Inf == _count, and _sum. Returns {family: type}."""
    assert text.endswith("\n"), "exposition must end with a newline"
    types, helped, seen_samples = {}, set(), set()
    hist = {}
    current = None
    for line in text.split("\n")[:-1]:
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert _NAME.match(name), name
            assert name not in helped, "duplicate HELP " + name
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            name, typ = parts[2], parts[3]
            assert _NAME.match(name), name
            assert name not in types, "duplicate TYPE " + name
            assert name not in seen_samples, "TYPE after samples " + name
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), typ
            types[name] = typ
            current = name
            continue
        assert not line.startswith("#"), line
        m = _SAMPLE.match(line)
        assert m, "bad sample line: %r" % line
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        float(value.replace("+Inf", "inf"))
        fam = name
        if current and types[current] == "histogram" and name.startswith(current):
            fam = current
            suffix = name[len(current):]
            assert suffix in ("_bucket", "_sum", "_count"), line
            key = re.sub(r',?le="[^"]*"', "", labels)
            h = hist.setdefault((fam, key), {"buckets": [], "count": None, "sum": None})
            if suffix == "_bucket":
                le = re.search(r'le="([^"]*)"', labels).group(1)
                h["buckets"].append((float(le.replace("+Inf", "inf")), float(value)))
            elif suffix == "_count":
                h["count"] = float(value)
            else:
                h["sum"] = float(value)
        assert fam == current, "sample %s outside its family block (%s)" % (name, current)
        assert fam in helped, "no HELP for " + fam
        seen_samples.add(fam)
    for (fam, _), h in hist.items():
        b = h["buckets"]
        assert b and b[-1][0] == float("inf"), fam + ": no +Inf bucket"
        assert all(b[i][0] < b[i + 1][0] for i in range(len(b) - 1)), fam + ": le not increasing"
        assert all(b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)), fam + ": buckets not cumulative"
        assert h["count"] == b[-1][1], fam + ": +Inf bucket != _count"
        assert h["sum"] is not None, fam + ": no _sum"
    return types
