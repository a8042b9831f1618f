#!/usr/bin/env python3
"""mock_hub.py — a local stand-in for the Hugging Face Hub, for shardserve's download tests.

Serves one checkpoint folder in the Hub's URL layout: GET /api/models/{id}/revision/{rev} (siblings,
sha, lfs.sha256 with ?blobs=true) and GET /{id}/resolve/{rev}/{file}. LFS files answer 302 to a "CDN"
on another host name (the Hub is 127.0.0.1:PORT, the CDN localhost:PORT), with X-Repo-Commit,
X-Linked-Etag and X-Linked-Size; the CDN honours Range. Fault modes: drop_once (close the connection
mid-file once), corrupt (one wrong byte), 401, 403 (gated), 404, require_token. Every request is
logged as a JSON line with whether an Authorization header came with it.
"""
import argparse
import hashlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHA = "5f1c0ffee0ddba11ca7c0de0123456789abcdef0"
LFS_MIN = 1 << 20


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.dropped = False
        self.files = {}
        for name in sorted(os.listdir(args.root)):
            path = os.path.join(args.root, name)
            if not os.path.isfile(path):
                continue
            data = open(path, "rb").read()
            lfs = name.endswith(".safetensors") or len(data) >= LFS_MIN
            self.files[name] = {"data": data, "sha256": hashlib.sha256(data).hexdigest(), "lfs": lfs,
                                "blob": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
        self.log = open(args.log, "a", buffering=1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):  # quiet; the JSON log says what happened
        pass

    def _log(self, kind):
        st = self.server.state
        rec = {"host": self.headers.get("Host", ""), "path": self.path, "kind": kind,
               "auth": self.headers.get("Authorization") is not None,
               "range": self.headers.get("Range")}
        with st.lock:
            st.log.write(json.dumps(rec) + "\n")

    def _send(self, code, body=b"", headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, code, err_code, msg):
        body = json.dumps({"error": msg}).encode()
        self._send(code, body, {"Content-Type": "application/json", "X-Error-Code": err_code, "X-Error-Message": msg})

    def do_GET(self):
        st = self.server.state
        host = self.headers.get("Host", "")
        if host.startswith("localhost"):
            self._log("cdn")
            return self._cdn()
        self._log("hub")
        a = st.args
        mode = a.mode
        if mode == "401":
            return self._error(401, "GatedRepo", "Access to model %s is restricted. You must have access to it "
                               "and be authenticated to access it. Please log in." % a.repo)
        if mode == "403":
            return self._error(403, "GatedRepo", "Access to model %s is restricted and you are not in the "
                               "authorized list. Visit https://huggingface.co/%s to ask for access." % (a.repo, a.repo))
        if mode == "404":
            return self._error(404, "RepoNotFound", "Repository Not Found for url: %s" % self.path)
        if mode == "require_token" and self.headers.get("Authorization") != "Bearer " + a.token:
            return self._error(401, "GatedRepo", "Invalid credentials in Authorization header")
        path = self.path.split("?", 1)[0]
        api = "/api/models/%s/revision/" % a.repo
        res = "/%s/resolve/" % a.repo
        if path.startswith(api):
            rev = path[len(api):]
            if rev not in ("main", SHA):
                return self._error(404, "RevisionNotFound", "Invalid rev id: %s" % rev)
            sib = []
            for name, f in st.files.items():
                e = {"rfilename": name, "size": len(f["data"]), "blobId": f["blob"]}
                if f["lfs"]:
                    e["lfs"] = {"sha256": f["sha256"], "size": len(f["data"]), "pointerSize": 134}
                sib.append(e)
            # Files a real repository has that serving does not need: never requested.
            sib.append({"rfilename": "README.md", "size": 10, "blobId": "0" * 40})
            sib.append({"rfilename": "original/consolidated.00.pth", "size": 99, "blobId": "1" * 40,
                        "lfs": {"sha256": "2" * 64, "size": 99, "pointerSize": 134}})
            body = json.dumps({"id": a.repo, "modelId": a.repo, "sha": SHA, "private": False,
                               "gated": "manual" if a.token else False, "siblings": sib}).encode()
            return self._send(200, body, {"Content-Type": "application/json"})
        if path.startswith(res):
            rest = path[len(res):]
            rev, _, name = rest.partition("/")
            if rev not in ("main", SHA) or name not in st.files:
                return self._error(404, "EntryNotFound", "%s does not exist" % name)
            f = st.files[name]
            hdr = {"X-Repo-Commit": SHA, "ETag": '"%s"' % f["blob"]}
            if f["lfs"]:
                port = self.server.server_address[1]
                hdr.update({"Location": "http://localhost:%d/cdn/%s/%s" % (port, f["sha256"], name),
                            "X-Linked-Etag": '"%s"' % f["sha256"], "X-Linked-Size": str(len(f["data"]))})
                return self._send(302, b"", hdr)
            return self._send(200, f["data"], hdr)
        return self._error(404, "NotFound", "no route for " + path)

    def _cdn(self):
        st = self.server.state
        parts = self.path.split("?", 1)[0].split("/")
        if len(parts) != 4 or parts[1] != "cdn" or parts[3] not in st.files:
            return self._send(404, b"not found")
        f = st.files[parts[3]]
        data = f["data"]
        if st.args.mode == "corrupt" and parts[3].endswith(".safetensors"):
            data = bytearray(data)
            data[len(data) // 2] ^= 0x01
            data = bytes(data)
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                return self._send(416, b"", {"Content-Range": "bytes */%d" % len(data)})
        body = data[start:]
        drop = False
        if st.args.mode == "drop_once" and parts[3].endswith(".safetensors"):
            with st.lock:
                if not st.dropped:
                    st.dropped = True
                    drop = True
        code = 206 if start else 200
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"%s"' % f["sha256"])
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        self.end_headers()
        if drop:  # half the body, then the connection dies
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        self.wfile.write(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--repo", default="test-org/tiny-llama")
    ap.add_argument("--mode", default="normal",
                    choices=["normal", "drop_once", "corrupt", "401", "403", "404", "require_token"])
    ap.add_argument("--token", default="")
    ap.add_argument("--log", required=True)
    ap.add_argument("--portfile", required=True)
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.state = State(a)
    tmp = a.portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, a.portfile)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
