#!/usr/bin/env python3
"""Differential probe: the same HTTP requests to this registry and to the reference.

Starts two registries on free 127.0.0.1 ports, each on a fresh temporary data directory:

  * ours: $CARGO_TARGET_DIR/release/registry serve (build it first with
    `cargo build --release --bin registry`; override the path with $OURS_BIN)
  * the reference: Debian's docker-registry (distribution 2.8.2), /usr/bin/docker-registry
    serve CONFIG, filesystem storage, deletes enabled, no auth (override with $REF_BIN)

then runs the same scenario against each (every scenario step uses the Location and
digests that registry itself returned) and prints one row per request: status and error
code from ours and from the reference, and a marker where they differ. Under a row that
differs in a key header, the header's two values follow. Pass -v to print every key
header of every row; -m adds the error messages of both under each row that differs.

Compared headers: Location (shape: absolute URLs are reduced to their path, upload ids to
<uuid>, distribution's `_state` query parameter is dropped), Range, Docker-Upload-UUID
(presence), Docker-Content-Digest, Content-Type, Content-Length (value on success,
presence on errors, whose message text differs), Content-Range, Link, OCI-Subject.

Only the python3 standard library; contacts only 127.0.0.1; exits 0 when both registries
ran the whole scenario, whatever the differences.
"""

import hashlib
import http.client
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

KEY_HEADERS = [
    "Location",
    "Range",
    "Docker-Upload-UUID",
    "Docker-Content-Digest",
    "Content-Type",
    "Content-Length",
    "Content-Range",
    "Link",
    "OCI-Subject",
    "OCI-Filters-Applied",
]

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
ABS_RE = re.compile(r"^https?://127\.0\.0\.1:\d+")

MT_DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_EMPTY = "application/vnd.oci.empty.v1+json"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canon(obj):
    return json.dumps(obj, indent=3).encode()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def short_digests(text):
    return re.sub(r"(sha256|sha512):([0-9a-f]{10})[0-9a-f]+", r"\1:\2…", text)


# --------------------------------------------------------------------------- results


class Result:
    def __init__(self, status, headers, body, method):
        self.status = status
        self.headers = headers  # lower-case name -> value
        self.body = body
        self.method = method
        self.note = ""
        self.path = ""

    def header(self, name):
        return self.headers.get(name.lower())

    @property
    def code(self):
        """The error codes of a JSON error body, or a hint of a non-JSON error body."""
        if self.status < 400 and self.status != 301:
            return ""
        if not self.body:
            return "(no body)" if self.method != "HEAD" else ""
        try:
            doc = json.loads(self.body)
            codes = []
            for e in doc.get("errors", []):
                if e.get("code") not in codes:
                    codes.append(e.get("code"))
            if codes:
                return "+".join(str(c) for c in codes)
            return "json:" + self.body[:30].decode("utf-8", "replace")
        except (ValueError, AttributeError):
            text = self.body[:28].decode("utf-8", "replace").strip().replace("\n", " ")
            return "text:'" + text + "'"

    def messages(self):
        """The error messages (and details) of a JSON error body, for -m."""
        try:
            doc = json.loads(self.body)
            return "; ".join("%s: %s%s" % (e.get("code"), e.get("message"),
                                           " (%s)" % json.dumps(e.get("detail"))
                                           if e.get("detail") else "")
                             for e in doc.get("errors", []))
        except (ValueError, AttributeError, TypeError):
            return self.body[:120].decode("utf-8", "replace").strip() if self.body else ""

    def norm(self, name):
        """The header as compared: None when absent."""
        value = self.header(name)
        if value is None:
            return None
        if name == "Location":
            value = ABS_RE.sub("", value)
            upload = self.header("Docker-Upload-UUID")
            if upload:
                value = value.replace(upload, "<uuid>")
            value = UUID_RE.sub("<uuid>", value)
            value = re.sub(r"[?&]_state=[^&]*", "", value)
            return short_digests(value)
        if name == "Docker-Upload-UUID":
            return "<uuid>" if UUID_RE.fullmatch(value) else "<id len %d>" % len(value)
        if name == "Content-Length" and (self.status >= 400 or self.status == 301
                                         or self.json_body() is not None):
            return "(present)"
        if name == "Content-Type":
            value = re.sub(r"^application/json; ?charset=utf-8$", "application/json", value)
        if name == "Link":
            return short_digests(re.sub(r"<https?://127\.0\.0\.1:\d+", "<", value))
        return short_digests(value)

    def summary(self):
        s = str(self.status)
        if self.code:
            s += " " + self.code
        return s

    def json_body(self):
        """The parsed body of a successful JSON answer (tags, catalog, referrers), else None."""
        ct = self.header("Content-Type") or ""
        if self.status >= 300 or not self.body or "json" not in ct:
            return None
        if "/manifests/" in self.path:
            return None
        try:
            return json.dumps(json.loads(self.body), sort_keys=True)
        except ValueError:
            return None


class Failed:
    """A request that got no HTTP answer."""

    def __init__(self, error):
        self.status = 0
        self.error = error
        self.code = ""
        self.note = ""

    def json_body(self):
        return None

    def messages(self):
        return ""

    def header(self, _name):
        return None

    def norm(self, _name):
        return None

    def summary(self):
        return "no answer: " + self.error


# --------------------------------------------------------------------------- clients


class Registry:
    def __init__(self, label, port):
        self.label = label
        self.port = port
        self.rows = []  # (name, Result)
        self.vars = {}

    def request(self, name, method, path, headers=None, body=None, record=True):
        headers = dict(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        note = ""
        try:
            if isinstance(body, bytes) and len(body) > (1 << 20):
                resp, note = self.big_request(method, path, headers, body)
            else:
                if isinstance(body, list):
                    # Streamed: no Content-Length, Transfer-Encoding: chunked.
                    conn.request(method, path, body=iter(body), headers=headers,
                                 encode_chunked=True)
                else:
                    conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
            try:
                data = resp.read()
            except http.client.IncompleteRead as e:
                data = e.partial
                note = "body shorter than its Content-Length"
            hdrs = {}
            for k, v in resp.getheaders():
                k = k.lower()
                hdrs[k] = hdrs[k] + ", " + v if k in hdrs else v
            result = Result(resp.status, hdrs, data, method)
            result.note = note
            result.path = path
        except (OSError, http.client.HTTPException) as e:
            result = Failed(type(e).__name__ + ": " + str(e))
        finally:
            conn.close()
        if record:
            self.rows.append((name, result))
        return result

    def big_request(self, method, path, headers, body):
        """Sends a large body while watching for an early answer, as curl and Go do."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: %d\r\n" % (
            method, path, self.port, len(body))
        head += "".join("%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
        sock.sendall(head.encode())
        sent, step = 0, 64 << 10
        note = ""
        while sent < len(body):
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                note = "answered after %d of %d body bytes" % (sent, len(body))
                break
            try:
                sent += sock.send(body[sent:sent + step])
            except OSError as e:
                note = "%s after %d of %d body bytes" % (type(e).__name__, sent, len(body))
                break
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        return resp, note

    def location(self, result, fallback):
        """A Location to follow as a path (distribution's are absolute URLs)."""
        loc = result.header("Location")
        if not loc:
            return fallback
        return ABS_RE.sub("", loc)


def wait_ready(port, proc, log, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("exited with %s; log %s" % (proc.returncode, log))
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("not ready after %d s; log %s" % (seconds, log))


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


def start_ours(tmp):
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/lain-registry/target")
    binary = os.environ.get("OURS_BIN") or os.path.join(target, "release", "registry")
    if not os.access(binary, os.X_OK):
        sys.exit("diff-probe: no %s; build with cargo build --release --bin registry" % binary)
    port = free_port()
    root = os.path.join(tmp, "ours-data")
    os.makedirs(root)
    env = clean_env()
    env.update(
        REGISTRY_HTTP_ADDR="127.0.0.1:%d" % port,
        REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=root,
        REGISTRY_STORAGE_DELETE_ENABLED="true",
        RUST_LOG=os.environ.get("RUST_LOG", "warn"),
    )
    log = os.path.join(tmp, "ours.log")
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, port, log


def start_reference(tmp):
    binary = os.environ.get("REF_BIN") or "/usr/bin/docker-registry"
    if not os.access(binary, os.X_OK):
        sys.exit("diff-probe: no %s; apt-get install -y docker-registry" % binary)
    port = free_port()
    root = os.path.join(tmp, "ref-data")
    os.makedirs(root)
    config = os.path.join(tmp, "ref-config.yml")
    with open(config, "w") as f:
        f.write(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            "storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n"
            "http:\n  addr: 127.0.0.1:%d\n" % (root, port)
        )
    log = os.path.join(tmp, "ref.log")
    proc = subprocess.Popen([binary, "serve", config], env=clean_env(), stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, port, log


# --------------------------------------------------------------------------- content

LAYER = b"layer-bytes-" * 1000
LAYER_D = sha256(LAYER)
CONFIG = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": [LAYER_D]}}).encode()
CONFIG_D = sha256(CONFIG)
EMPTY = b"{}"
EMPTY_D = sha256(EMPTY)


def docker_manifest(layers=None):
    return canon({
        "schemaVersion": 2,
        "mediaType": MT_DOCKER_V2,
        "config": {"mediaType": MT_DOCKER_CONFIG, "size": len(CONFIG), "digest": CONFIG_D},
        "layers": layers if layers is not None else
        [{"mediaType": MT_DOCKER_LAYER, "size": len(LAYER), "digest": LAYER_D}],
    })


def oci_manifest(layers=None, **extra):
    doc = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "size": len(CONFIG), "digest": CONFIG_D},
        "layers": layers if layers is not None else
        [{"mediaType": MT_OCI_LAYER, "size": len(LAYER), "digest": LAYER_D}],
    }
    doc.update(extra)
    return canon(doc)


def index(media_type, children):
    return canon({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [{"mediaType": mt, "size": len(body), "digest": sha256(body),
                       "platform": {"architecture": "amd64", "os": "linux"}}
                      for mt, body in children],
    })


M_DOCKER = docker_manifest()
M_OCI = oci_manifest()
MISSING = b"not pushed anywhere"
M_MISSING_LAYER = docker_manifest([{"mediaType": MT_DOCKER_LAYER, "size": len(MISSING),
                                    "digest": sha256(MISSING)}])
M_LIST = index(MT_DOCKER_LIST, [(MT_DOCKER_V2, M_DOCKER)])
M_INDEX = index(MT_OCI_INDEX, [(MT_OCI_MANIFEST, M_OCI)])
ORPHAN = oci_manifest([{"mediaType": MT_OCI_LAYER, "size": 3, "digest": sha256(b"abc")}])
M_LIST_MISSING = index(MT_DOCKER_LIST, [(MT_DOCKER_V2, M_MISSING_LAYER)])
M_INDEX_MISSING = index(MT_OCI_INDEX, [(MT_OCI_MANIFEST, ORPHAN)])
ARTIFACT = canon({
    "schemaVersion": 2,
    "mediaType": MT_OCI_MANIFEST,
    "artifactType": "application/vnd.example.sig",
    "config": {"mediaType": MT_OCI_EMPTY, "size": 2, "digest": EMPTY_D},
    "layers": [{"mediaType": MT_OCI_EMPTY, "size": 2, "digest": EMPTY_D}],
    "subject": {"mediaType": MT_OCI_MANIFEST, "size": len(M_OCI), "digest": sha256(M_OCI)},
})


# --------------------------------------------------------------------------- scenario


def scenario(r):
    R = r.request
    BAD_UUID = "/v2/probe/up/blobs/uploads/00000000-0000-4000-8000-000000000000"

    # Base.
    R("base: GET /v2/", "GET", "/v2/")
    R("base: HEAD /v2/", "HEAD", "/v2/")

    # Chunked upload, session 1: the happy path. Every step follows the Location the
    # registry returned last (distribution's carries a signed _state with the offset).
    a, b, c, d = b"a" * 1000, b"b" * 1000, b"c" * 1000, b"d" * 500
    res = R("up1: POST start", "POST", "/v2/probe/up/blobs/uploads/")
    loc = r.location(res, BAD_UUID)
    res = R("up1: PATCH streamed (chunked, 2000 B)", "PATCH", loc, body=[a, b])
    loc = r.location(res, loc)
    res = R("up1: GET status", "GET", loc)
    loc = r.location(res, loc)
    res = R("up1: PATCH Content-Range 2000-2999 in order", "PATCH", loc,
            {"Content-Range": "2000-2999", "Content-Type": "application/octet-stream"}, c)
    loc = r.location(res, loc)
    whole = a + b + c + d
    res = R("up1: PUT ?digest= with last 500 B in body", "PUT",
            loc + ("&" if "?" in loc else "?") + "digest=" + sha256(whole), None, d)
    R("up1: GET status after PUT", "GET", loc)
    R("up1: PATCH after PUT", "PATCH", loc, None, b"z")
    R("up1: HEAD the uploaded blob", "HEAD", "/v2/probe/up/blobs/" + sha256(whole))

    # Session 6: Content-Range errors. The Location is followed only after a 2xx.
    def follow(res, loc):
        return r.location(res, loc) if 200 <= res.status < 300 else loc
    res = R("up6: POST start", "POST", "/v2/probe/up/blobs/uploads/")
    loc = r.location(res, BAD_UUID)
    res = R("up6: PATCH Content-Range 0-999", "PATCH", loc, {"Content-Range": "0-999"}, a)
    loc = follow(res, loc)
    res = R("up6: PATCH Content-Range 0-999 repeated", "PATCH", loc,
            {"Content-Range": "0-999"}, a)
    loc = follow(res, loc)
    res = R("up6: PATCH Content-Range 5000-5999 (gap)", "PATCH", loc,
            {"Content-Range": "5000-5999"}, b)
    loc = follow(res, loc)
    res = R("up6: PATCH Content-Range 'bytes=abc'", "PATCH", loc,
            {"Content-Range": "bytes=abc"}, b)
    loc = follow(res, loc)
    res = R("up6: PATCH Content-Range 1000-1999, 10 B", "PATCH", loc,
            {"Content-Range": "1000-1999"}, b"x" * 10)
    loc = follow(res, loc)
    res = R("up6: PATCH Content-Range 'bytes 1000-1999/*'", "PATCH", loc,
            {"Content-Range": "bytes 1000-1999/*"}, b)
    loc = follow(res, loc)
    res = R("up6: GET status after the bad PATCHes", "GET", loc)
    loc = follow(res, loc)
    R("up6: PUT ?digest= of a+b (2000 B, each once)", "PUT",
      loc + ("&" if "?" in loc else "?") + "digest=" + sha256(a + b))

    # Session 2: PUT without digest, then malformed digest.
    res = R("up2: POST start", "POST", "/v2/probe/up/blobs/uploads/")
    loc2 = r.location(res, BAD_UUID)
    res = R("up2: PATCH 3 B", "PATCH", loc2, None, b"xyz")
    loc2 = r.location(res, loc2)
    R("up2: PUT without ?digest", "PUT", loc2)
    R("up2: GET status after PUT without digest", "GET", loc2)
    sep = "&" if "?" in loc2 else "?"
    R("up2: PUT ?digest=sha256:zz (malformed)", "PUT", loc2 + sep + "digest=sha256:zz")
    R("up2: GET status after malformed digest", "GET", loc2)

    # Session 3: wrong digest.
    res = R("up3: POST start", "POST", "/v2/probe/up/blobs/uploads/")
    loc3 = r.location(res, BAD_UUID)
    sep = "&" if "?" in loc3 else "?"
    R("up3: PUT wrong digest (body 3 B)", "PUT", loc3 + sep + "digest=" + sha256(b"other"),
      None, b"xyz")
    R("up3: GET status after wrong digest", "GET", loc3)

    # Session 4: cancel.
    res = R("up4: POST start", "POST", "/v2/probe/up/blobs/uploads/")
    loc4 = r.location(res, BAD_UUID)
    R("up4: DELETE session", "DELETE", loc4)
    R("up4: DELETE session again", "DELETE", loc4)
    R("up4: GET status after DELETE", "GET", loc4)
    R("up4: PATCH after DELETE", "PATCH", loc4, None, b"z")

    # Session 5: PUT with the whole body and no PATCH (the spec's 'monolithic' two-step).
    res = R("up5: POST start", "POST", "/v2/probe/up/blobs/uploads/")
    loc5 = r.location(res, BAD_UUID)
    sep = "&" if "?" in loc5 else "?"
    R("up5: PUT whole body ?digest=", "PUT", loc5 + sep + "digest=" + sha256(b"two-step"),
      {"Content-Type": "application/octet-stream"}, b"two-step")

    # Unknown sessions addressed by a bare path (no distribution _state).
    R("unknown session: GET bare uuid", "GET", BAD_UUID)
    R("unknown session: PATCH bare uuid", "PATCH", BAD_UUID, None, b"z")
    R("unknown session: PUT bare uuid", "PUT", BAD_UUID + "?digest=" + sha256(b"z"), None, b"z")
    R("unknown session: DELETE bare uuid", "DELETE", BAD_UUID)
    R("unknown session: GET non-uuid id", "GET", "/v2/probe/up/blobs/uploads/nope")

    # Seed probe/app with the layer and config by POST + PUT (both registries support it).
    for label, data in (("layer", LAYER), ("config", CONFIG)):
        res = R("seed: POST start (%s)" % label, "POST", "/v2/probe/app/blobs/uploads/")
        sl = r.location(res, BAD_UUID)
        R("seed: PUT ?digest= (%s)" % label, "PUT",
          sl + ("&" if "?" in sl else "?") + "digest=" + sha256(data),
          {"Content-Type": "application/octet-stream"}, data)

    # Monolithic POST ?digest= (an existing blob, then new ones).
    R("mono: POST ?digest= layer", "POST", "/v2/probe/app/blobs/uploads/?digest=" + LAYER_D,
      {"Content-Type": "application/octet-stream"}, LAYER)
    R("mono: POST ?digest= new blob", "POST", "/v2/probe/mono/blobs/uploads/?digest=" + sha256(b"mono"),
      {"Content-Type": "application/octet-stream"}, b"mono")
    R("mono: HEAD the new blob", "HEAD", "/v2/probe/mono/blobs/" + sha256(b"mono"))
    R("mono: POST ?digest= wrong digest", "POST",
      "/v2/probe/app/blobs/uploads/?digest=" + sha256(b"else"), None, b"body")
    R("mono: POST ?digest=sha256:zz malformed", "POST",
      "/v2/probe/app/blobs/uploads/?digest=sha256:zz", None, b"body")
    R("mono: POST ?digest= empty body, digest of ''", "POST",
      "/v2/probe/app/blobs/uploads/?digest=" + sha256(b""), None, b"")

    # Mounts.
    R("mount: from= repo that has it", "POST",
      "/v2/probe/mnt/blobs/uploads/?mount=%s&from=probe/app" % LAYER_D)
    R("mount: from= repo without the blob", "POST",
      "/v2/probe/mnt/blobs/uploads/?mount=%s&from=probe/app" % sha256(MISSING))
    R("mount: from= repo that does not exist", "POST",
      "/v2/probe/mnt/blobs/uploads/?mount=%s&from=no/such" % CONFIG_D)
    R("mount: no from= (blob held elsewhere)", "POST",
      "/v2/probe/mnt2/blobs/uploads/?mount=%s" % CONFIG_D)
    R("mount: from=Bad/Name", "POST",
      "/v2/probe/mnt/blobs/uploads/?mount=%s&from=Bad/Name" % CONFIG_D)
    R("mount: mount=sha256:zz", "POST",
      "/v2/probe/mnt/blobs/uploads/?mount=sha256:zz&from=probe/app")
    R("mount: HEAD mounted blob", "HEAD", "/v2/probe/mnt/blobs/" + LAYER_D)

    # Blob reads.
    blob = "/v2/probe/app/blobs/" + LAYER_D
    R("blob: HEAD", "HEAD", blob)
    R("blob: GET", "GET", blob)
    R("blob: GET Range bytes=0-99", "GET", blob, {"Range": "bytes=0-99"})
    R("blob: GET Range bytes=-100 (suffix)", "GET", blob, {"Range": "bytes=-100"})
    R("blob: GET Range bytes=11900- (open)", "GET", blob, {"Range": "bytes=11900-"})
    R("blob: GET Range bytes=0-99999 (past end)", "GET", blob, {"Range": "bytes=0-99999"})
    R("blob: GET Range bytes=99999- (unsatisfiable)", "GET", blob, {"Range": "bytes=99999-"})
    R("blob: GET Range bytes=0-1,5-9 (multi)", "GET", blob, {"Range": "bytes=0-1,5-9"})
    R("blob: GET Range bytes=abc (malformed)", "GET", blob, {"Range": "bytes=abc"})
    R("blob: HEAD Range bytes=0-99", "HEAD", blob, {"Range": "bytes=0-99"})
    R("blob: HEAD unknown", "HEAD", "/v2/probe/app/blobs/" + sha256(MISSING))
    R("blob: GET unknown", "GET", "/v2/probe/app/blobs/" + sha256(MISSING))
    R("blob: GET present only in another repo", "GET", "/v2/probe/up/blobs/" + LAYER_D)
    R("blob: GET /blobs/sha256:zz (bad digest)", "GET", "/v2/probe/app/blobs/sha256:zz")
    R("blob: GET /blobs/md5:<32 hex> (unknown alg)", "GET",
      "/v2/probe/app/blobs/md5:" + hashlib.md5(b"x").hexdigest())

    # Blob delete.
    gone = b"to be deleted"
    res = R("blob del: POST start", "POST", "/v2/probe/del/blobs/uploads/")
    sl = r.location(res, BAD_UUID)
    R("blob del: PUT ?digest=", "PUT", sl + ("&" if "?" in sl else "?") + "digest=" + sha256(gone),
      None, gone)
    R("blob del: DELETE", "DELETE", "/v2/probe/del/blobs/" + sha256(gone))
    R("blob del: DELETE again", "DELETE", "/v2/probe/del/blobs/" + sha256(gone))
    R("blob del: HEAD after DELETE", "HEAD", "/v2/probe/del/blobs/" + sha256(gone))
    R("blob del: DELETE bad digest", "DELETE", "/v2/probe/del/blobs/sha256:zz")

    # Manifest pushes.
    man = "/v2/probe/app/manifests/"
    R("man: PUT docker v2 by tag v1", "PUT", man + "v1", {"Content-Type": MT_DOCKER_V2}, M_DOCKER)
    R("man: PUT oci manifest by digest", "PUT", man + sha256(M_OCI),
      {"Content-Type": MT_OCI_MANIFEST}, M_OCI)
    R("man: PUT oci manifest by tag oci", "PUT", man + "oci",
      {"Content-Type": MT_OCI_MANIFEST}, M_OCI)
    R("man: PUT docker v2 by digest", "PUT", man + sha256(M_DOCKER),
      {"Content-Type": MT_DOCKER_V2}, M_DOCKER)
    R("man: PUT by digest, wrong digest", "PUT", man + sha256(b"nope"),
      {"Content-Type": MT_DOCKER_V2}, M_DOCKER)
    R("man: PUT missing layer", "PUT", man + "missing",
      {"Content-Type": MT_DOCKER_V2}, M_MISSING_LAYER)
    R("man: PUT docker list, child present", "PUT", man + "list",
      {"Content-Type": MT_DOCKER_LIST}, M_LIST)
    R("man: PUT docker list, child missing", "PUT", man + "list-missing",
      {"Content-Type": MT_DOCKER_LIST}, M_LIST_MISSING)
    R("man: PUT oci index, child present", "PUT", man + "index",
      {"Content-Type": MT_OCI_INDEX}, M_INDEX)
    R("man: PUT oci index, child missing", "PUT", man + "index-missing",
      {"Content-Type": MT_OCI_INDEX}, M_INDEX_MISSING)
    R("man: PUT invalid JSON", "PUT", man + "bad", {"Content-Type": MT_DOCKER_V2}, b"{not json")
    R("man: PUT unknown type (CT and mediaType)", "PUT", man + "weird",
      {"Content-Type": "application/vnd.example.weird+json"},
      canon({"schemaVersion": 2, "mediaType": "application/vnd.example.weird+json"}))
    R("man: PUT oci, no CT, mediaType in body", "PUT", man + "nocontenttype", None, M_OCI)
    R("man: PUT oci body, docker CT (disagree)", "PUT", man + "disagree",
      {"Content-Type": MT_DOCKER_V2}, M_OCI)
    R("man: PUT oci, no mediaType in body, CT oci", "PUT", man + "nomediatype",
      {"Content-Type": MT_OCI_MANIFEST},
      canon({k: v for k, v in json.loads(M_OCI).items() if k != "mediaType"}))
    big = canon({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "config": {"mediaType": MT_OCI_CONFIG, "size": len(CONFIG), "digest": CONFIG_D},
                 "layers": [], "annotations": {"pad": "x" * (5 << 20)}})
    R("man: PUT 5 MiB manifest", "PUT", man + "big", {"Content-Type": MT_OCI_MANIFEST}, big)
    R("man: PUT invalid tag '-bad'", "PUT", man + "-bad", {"Content-Type": MT_DOCKER_V2}, M_DOCKER)
    R("man: PUT invalid tag 129 chars", "PUT", man + "t" * 129,
      {"Content-Type": MT_DOCKER_V2}, M_DOCKER)
    R("man: PUT invalid tag 'a%21b' (a!b)", "PUT", man + "a%21b",
      {"Content-Type": MT_DOCKER_V2}, M_DOCKER)
    R("man: PUT artifact, {} blob not pushed", "PUT",
      "/v2/probe/art/manifests/" + sha256(ARTIFACT), {"Content-Type": MT_OCI_MANIFEST}, ARTIFACT)
    res = R("seed: POST start ({} blob)", "POST", "/v2/probe/app/blobs/uploads/")
    sl = r.location(res, BAD_UUID)
    R("seed: PUT ?digest= ({} blob)", "PUT",
      sl + ("&" if "?" in sl else "?") + "digest=" + EMPTY_D, None, EMPTY)
    R("man: PUT artifact with subject", "PUT", man + sha256(ARTIFACT),
      {"Content-Type": MT_OCI_MANIFEST}, ARTIFACT)

    # Manifest reads with Accept variants.
    accepts = [
        ("no Accept", None),
        ("*/*", "*/*"),
    ]
    cases = [
        ("v1 (docker v2)", "v1", MT_DOCKER_V2, MT_OCI_MANIFEST),
        ("oci", "oci", MT_OCI_MANIFEST, MT_DOCKER_V2),
        ("list", "list", MT_DOCKER_LIST, MT_OCI_INDEX),
        ("index", "index", MT_OCI_INDEX, MT_DOCKER_LIST),
    ]
    digests = {"v1": M_DOCKER, "oci": M_OCI, "list": M_LIST, "index": M_INDEX}
    for label, tag, own, other in cases:
        variants = accepts + [("own type", own), ("other type only", other)]
        for ref_label, ref in (("tag", tag), ("digest", sha256(digests[tag]))):
            for acc_label, acc in variants:
                if ref_label == "digest" and acc_label not in ("no Accept", "other type only"):
                    continue
                h = {"Accept": acc} if acc else None
                R("man GET %s by %s, %s" % (label, ref_label, acc_label), "GET", man + ref, h)
    R("man HEAD v1 by tag, own type", "HEAD", man + "v1", {"Accept": MT_DOCKER_V2})
    R("man HEAD v1 by tag, no Accept", "HEAD", man + "v1")
    R("man HEAD oci by digest, own type", "HEAD", man + sha256(M_OCI), {"Accept": MT_OCI_MANIFEST})
    R("man GET oci by tag, Accept list (docker+oci)", "GET", man + "oci",
      {"Accept": MT_DOCKER_V2 + ", " + MT_OCI_MANIFEST + ";q=0.9"})
    R("man GET unknown tag", "GET", man + "nosuchtag", {"Accept": MT_DOCKER_V2})
    R("man HEAD unknown tag", "HEAD", man + "nosuchtag", {"Accept": MT_DOCKER_V2})
    R("man GET unknown digest", "GET", man + sha256(b"nothing"), {"Accept": MT_DOCKER_V2})
    R("man GET unknown repo", "GET", "/v2/no/such/manifests/latest", {"Accept": MT_DOCKER_V2})
    R("man GET invalid reference '-bad'", "GET", man + "-bad", {"Accept": MT_DOCKER_V2})
    R("man GET reference sha256:zz", "GET", man + "sha256:zz", {"Accept": MT_DOCKER_V2})

    # Tags and catalog before deletions.
    tags = "/v2/probe/app/tags/list"
    res = R("tags: list", "GET", tags)
    try:
        count = len(json.loads(res.body)["tags"])
    except (ValueError, KeyError, TypeError, AttributeError):
        count = 4
    res = R("tags: n=2", "GET", tags + "?n=2")
    link = res.header("Link")
    m = re.search(r"<([^>]*)>", link or "")
    R("tags: follow Link (else n=2&last=list)", "GET",
      ABS_RE.sub("", m.group(1)) if m else tags + "?n=2&last=list")
    R("tags: n=<number of tags>", "GET", tags + "?n=%d" % count)
    R("tags: last=oci (no n)", "GET", tags + "?last=oci")
    R("tags: n=abc", "GET", tags + "?n=abc")
    R("tags: n=0", "GET", tags + "?n=0")
    R("tags: n=-1", "GET", tags + "?n=-1")
    R("tags: unknown repository", "GET", "/v2/no/such/tags/list")
    R("tags: repo with blobs only", "GET", "/v2/probe/up/tags/list")

    R("catalog: all", "GET", "/v2/_catalog")
    res = R("catalog: n=2", "GET", "/v2/_catalog?n=2")
    m = re.search(r"<([^>]*)>", res.header("Link") or "")
    R("catalog: follow Link (else n=2&last=probe/del)", "GET",
      ABS_RE.sub("", m.group(1)) if m else "/v2/_catalog?n=2&last=probe/del")
    R("catalog: last=probe/del", "GET", "/v2/_catalog?last=probe/del")
    R("catalog: n=abc", "GET", "/v2/_catalog?n=abc")
    R("catalog: n=0", "GET", "/v2/_catalog?n=0")
    R("catalog: n=5000", "GET", "/v2/_catalog?n=5000")
    R("catalog: HEAD", "HEAD", "/v2/_catalog")

    # Referrers.
    ref = "/v2/probe/app/referrers/"
    R("referrers: subject with a referrer", "GET", ref + sha256(M_OCI))
    R("referrers: ?artifactType= match", "GET",
      ref + sha256(M_OCI) + "?artifactType=application/vnd.example.sig")
    R("referrers: unknown subject", "GET", ref + sha256(b"nothing"))
    R("referrers: bad digest", "GET", ref + "sha256:zz")

    # Manifest deletes.
    R("man DELETE by tag v1", "DELETE", man + "v1")
    R("man GET v1 after tag delete", "GET", man + "v1", {"Accept": MT_DOCKER_V2})
    R("man GET docker v2 by digest after tag delete", "GET", man + sha256(M_DOCKER),
      {"Accept": MT_DOCKER_V2})
    R("man DELETE oci by digest", "DELETE", man + sha256(M_OCI))
    R("man GET tag oci after digest delete", "GET", man + "oci", {"Accept": MT_OCI_MANIFEST})
    R("man DELETE same digest again", "DELETE", man + sha256(M_OCI))
    R("man DELETE unknown tag", "DELETE", man + "nosuchtag")
    R("tags: list after deletes", "GET", tags)

    # Invalid names.
    R("name: uppercase (tags/list)", "GET", "/v2/Probe/App/tags/list")
    R("name: uppercase (POST upload)", "POST", "/v2/Probe/App/blobs/uploads/")
    R("name: a//b (tags/list)", "GET", "/v2/a//b/tags/list")
    R("name: 256 chars (tags/list)", "GET", "/v2/" + "a" * 256 + "/tags/list")
    R("name: 256 chars (POST upload)", "POST", "/v2/" + "a" * 256 + "/blobs/uploads/")
    R("name: 255 chars (tags/list)", "GET", "/v2/" + "a" * 255 + "/tags/list")
    R("name: trailing dash 'a-' (tags/list)", "GET", "/v2/a-/tags/list")

    # Unknown routes and wrong methods.
    R("route: GET /nope", "GET", "/nope")
    R("route: GET /v2/probe/app/nope", "GET", "/v2/probe/app/nope")
    R("route: GET /v2/probe/app/blobs/", "GET", "/v2/probe/app/blobs/")
    R("route: GET /v2/probe/app/tags/", "GET", "/v2/probe/app/tags/")
    R("method: PUT /v2/", "PUT", "/v2/")
    R("method: POST manifests/v1", "POST", man + "v1")
    R("method: PATCH blob", "PATCH", blob, None, b"x")
    R("method: DELETE /v2/_catalog", "DELETE", "/v2/_catalog")
    R("method: PUT uploads/ (no uuid)", "PUT", "/v2/probe/app/blobs/uploads/")


# --------------------------------------------------------------------------- table


def compare(ours, theirs):
    markers = []
    if ours.status != theirs.status:
        markers.append("STATUS")
    if ours.code != theirs.code:
        markers.append("CODE")
    header_diffs = []
    for h in KEY_HEADERS:
        a, b = ours.norm(h), theirs.norm(h)
        if a != b:
            header_diffs.append((h, a, b))
    if header_diffs:
        markers.append("HDR")
    ja, jb = ours.json_body(), theirs.json_body()
    if ja != jb and (ja or jb):
        markers.append("BODY")
        header_diffs.append(("body", short_digests(ja or "—"), short_digests(jb or "—")))
    if ours.note or theirs.note:
        header_diffs.append(("note", ours.note or "—", theirs.note or "—"))
    return markers, header_diffs


def show(v):
    return "—" if v is None else v


def print_table(ours, ref, verbose, messages):
    wn, wv = 46, 38
    line = "%-*s %-*s %-*s %s"
    print(line % (wn, "request", wv, "ours", wv, "reference 2.8.2", "diff"))
    print("-" * (wn + 2 * wv + 12))
    counts = {"rows": 0, "differ": 0}
    for (name, a), (name_b, b) in zip(ours.rows, ref.rows):
        assert name == name_b, (name, name_b)
        markers, hdiffs = compare(a, b)
        counts["rows"] += 1
        if markers:
            counts["differ"] += 1
        print(line % (wn, name[:wn], wv, a.summary()[:wv], wv, b.summary()[:wv],
                      "≠ " + ",".join(markers) if markers else ""))
        extra = {h: (x, y) for h, x, y in hdiffs if h not in KEY_HEADERS}
        shown = KEY_HEADERS if verbose else [h for h, _, _ in hdiffs if h in KEY_HEADERS]
        for h in shown:
            x, y = a.norm(h), b.norm(h)
            if verbose and x is None and y is None:
                continue
            mark = " ≠" if x != y else ""
            print("    %-*s %-*s %-*s%s" % (wn - 4, h + ":", wv, show(x)[:wv + 40], wv,
                                            show(y)[:wv + 40], mark))
        for h, (x, y) in extra.items():
            if h == "body":
                print("    body ours: %s" % x[:400])
                print("    body ref:  %s" % y[:400])
            else:
                print("    %-*s %-*s %s" % (wn - 4, h + ":", wv, x, y))
        if messages and markers:
            for who, res in (("ours", a), ("ref", b)):
                if res.status >= 400 and res.messages():
                    print("    message %s: %s" % (who, short_digests(res.messages())[:300]))
    print("-" * (wn + 2 * wv + 12))
    print("%d requests, %d differ (STATUS = status code, CODE = error code or body kind, "
          "HDR = a key header, BODY = a JSON listing body)" % (counts["rows"], counts["differ"]))
    if len(ours.rows) != len(ref.rows):
        print("row counts differ: ours %d, reference %d" % (len(ours.rows), len(ref.rows)))


def main():
    verbose = "-v" in sys.argv[1:]
    messages = "-m" in sys.argv[1:]
    tmp = tempfile.mkdtemp(prefix="diff-probe-")
    procs = []
    try:
        p, ours_port, ours_log = start_ours(tmp)
        procs.append(p)
        q, ref_port, ref_log = start_reference(tmp)
        procs.append(q)
        wait_ready(ours_port, p, ours_log)
        wait_ready(ref_port, q, ref_log)
        ours = Registry("ours", ours_port)
        ref = Registry("reference", ref_port)
        scenario(ours)
        scenario(ref)
        print("ours: 127.0.0.1:%d   reference: docker-registry on 127.0.0.1:%d" % (ours_port, ref_port))
        print("Location compared by shape: absolute URLs reduced to their path, upload ids to "
              "<uuid>, distribution's _state query dropped; digests shortened;\n"
              "Content-Type 'application/json; charset=utf-8' (the reference's) compared as "
              "'application/json'.\n")
        print_table(ours, ref, verbose, messages)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if os.environ.get("KEEP_PROBE_DIR"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
