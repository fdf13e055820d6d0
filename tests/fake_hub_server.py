"""A loopback stand-in for the Hugging Face Hub: the calls ``DatasetDict.push_to_hub`` and
``HfApi.upload_file`` make, answered from memory, so that a push can be tested end to end without
the network. Point huggingface_hub at it with ``HF_ENDPOINT`` (read when huggingface_hub and datasets
are imported: set it in a subprocess's environment) and ``HF_HUB_DISABLE_XET=1``.

What it answers (the calls were found by pushing at it and logging every request):

    GET  /api/whoami-v2                                 the token's user ("tester")
    POST /api/repos/create                              a dataset repo, private or not
    GET  /api/datasets/NAME[/revision/REV]              repo info (its files)
    GET  /api/datasets/NAME/tree/REV[/PATH]             the files under PATH
    POST /api/datasets/NAME/preupload/REV               parquet shards go by LFS, the rest inline
    POST /datasets/NAME.git/info/lfs/objects/batch      an upload URL per object not stored yet
    PUT  /lfs-upload/OID                                the object's bytes (sha256 checked)
    POST /api/datasets/NAME/commit/REV                  NDJSON: header, file (base64), lfsFile
    POST /api/validate-yaml                             a card (its front matter must be a YAML mapping)
    HEAD/GET /datasets/NAME/resolve/REV/PATH            a committed file, or 404 EntryNotFound

Xet uploads are not spoken (no CAS server): the client is told to use LFS. Every request is logged
in ``requests`` as (method, path); ``repos`` holds each repo's ``private`` flag and its files. A
request without ``Authorization: Bearer ...`` is refused (401), as the Hub refuses a write.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

USER = "tester"
COMMIT = "0" * 40


class FakeHub:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.repos: dict[str, dict[str, Any]] = {}       # repo id -> {"private": bool, "files": {path: bytes}}
        self.lfs: dict[str, bytes] = {}                  # sha256 hex -> content
        self.validated_cards: list[str] = []             # what /api/validate-yaml was sent
        self.fail_commits = False                        # answer every commit with a 500
        self.lock = threading.Lock()
        self.url = ""

    def files(self, repo_id: str) -> dict[str, bytes]:
        return self.repos[repo_id]["files"]


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:       # quiet: the log is hub.requests
            pass

        # -- plumbing --
        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None,
                  raw: bytes | None = None) -> None:
            body = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _not_found(self, code: str = "EntryNotFound") -> None:
            self._send(404, {"error": f"{code}: {self.path}"}, {"X-Error-Code": code,
                                                               "X-Error-Message": f"{code}: {self.path}"})

        def _authorised(self) -> bool:
            if self.headers.get("Authorization", "").startswith("Bearer "):
                return True
            self._send(401, {"error": "Invalid credentials"}, {"X-Error-Message": "Invalid credentials"})
            return False

        def _route(self) -> None:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            with hub.lock:
                hub.requests.append((self.command, path))
            body = self._body() if self.command in ("POST", "PUT") else b""
            for verb, prefix, method in ROUTES:
                if self.command == verb and path.startswith(prefix):
                    return getattr(self, method)(path[len(prefix):], body)
            self._not_found("RepoNotFound")

        do_GET = do_POST = do_PUT = do_HEAD = _route

        # -- the calls --
        def whoami(self, _: str, __: bytes) -> None:
            if self._authorised():
                self._send(200, {"type": "user", "name": USER, "orgs": [],
                                 "auth": {"accessToken": {"role": "write"}}})

        def validate_yaml(self, _: str, body: bytes) -> None:
            """A card: recorded, and accepted when its front matter parses as a YAML mapping."""
            import yaml

            content = json.loads(body).get("content", "")
            hub.validated_cards.append(content)
            head, sep, rest = content.partition("---\n")
            try:
                ok = not head.strip() and bool(sep) and isinstance(yaml.safe_load(rest.split("\n---", 1)[0]), dict)
            except yaml.YAMLError:
                ok = False
            self._send(200 if ok else 400, {"errors": [] if ok else [{"message": "invalid YAML"}], "warnings": []})

        def create_repo(self, _: str, body: bytes) -> None:
            if not self._authorised():
                return
            spec = json.loads(body)
            repo_id = f"{spec.get('organization') or USER}/{spec['name']}"
            with hub.lock:
                if repo_id in hub.repos:
                    return self._send(409, {"error": "You already created this dataset repo",
                                            "url": f"{hub.url}/datasets/{repo_id}"})
                # huggingface_hub 1.x+ sends "visibility"; older clients sent "private"
                private = spec.get("visibility") == "private" or bool(spec.get("private"))
                hub.repos[repo_id] = {"private": private, "type": spec.get("type"),
                                      "files": {}}
            self._send(200, {"url": f"{hub.url}/datasets/{repo_id}", "name": repo_id, "id": repo_id})

        def api_dataset(self, rest: str, body: bytes) -> None:
            repo_id, action, tail = _split_repo(rest)
            if repo_id not in hub.repos:
                return self._not_found("RepoNotFound")
            if action in ("", "revision"):
                return self._send(200, self._info(repo_id))
            if action == "tree":
                return self._tree(repo_id, tail.partition("/")[2].strip("/"), "recursive=true" in self.path.lower()
                                  or "recursive=1" in self.path)
            if action == "paths-info":
                return self._send(200, [])
            if action == "preupload":
                if not self._authorised():
                    return
                files = json.loads(body)["files"]
                return self._send(200, {"files": [
                    {"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(".parquet") else "regular",
                     "shouldIgnore": False} for f in files]})
            if action == "commit":
                if not self._authorised():
                    return
                return self._commit(repo_id, body)
            self._not_found()

        def _tree(self, repo_id: str, under: str, recursive: bool) -> None:
            """The files (and, unless recursive, the folders) below ``under``; a folder that holds
            nothing does not exist (404 EntryNotFound, as on the Hub)."""
            prefix = f"{under}/" if under else ""
            below = {p[len(prefix):]: c for p, c in hub.files(repo_id).items() if p.startswith(prefix)}
            if under and not below:
                return self._not_found()
            entries: dict[str, dict[str, Any]] = {}
            for rel, content in sorted(below.items()):
                head, sep, _ = rel.partition("/")
                if sep and not recursive:
                    entries[prefix + head] = {"type": "directory", "path": prefix + head, "oid": COMMIT, "size": 0}
                else:
                    entries[prefix + rel] = {"type": "file", "path": prefix + rel, "size": len(content),
                                             "oid": _git_oid(content)}
            self._send(200, list(entries.values()))

        def _info(self, repo_id: str) -> dict[str, Any]:
            repo = hub.repos[repo_id]
            return {"id": repo_id, "private": repo["private"], "sha": COMMIT,
                    "siblings": [{"rfilename": p} for p in sorted(repo["files"])], "cardData": {}}

        def _commit(self, repo_id: str, body: bytes) -> None:
            if hub.fail_commits:
                return self._send(500, {"error": "the fake hub fails commits"},
                                  {"X-Error-Message": "the fake hub fails commits"})
            files = {}
            for line in body.decode().splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                value = item["value"]
                if item["key"] == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] == "lfsFile":
                    if value["oid"] not in hub.lfs:
                        return self._send(422, {"error": f"LFS object {value['oid']} was never uploaded"})
                    files[value["path"]] = hub.lfs[value["oid"]]
                elif item["key"] == "deletedFile":
                    hub.files(repo_id).pop(value["path"], None)
            with hub.lock:
                hub.files(repo_id).update(files)
            self._send(200, {"commitUrl": f"{hub.url}/datasets/{repo_id}/commit/{COMMIT}",
                             "commitOid": COMMIT, "pullRequestUrl": None})

        def lfs_batch(self, rest: str, body: bytes) -> None:
            request = json.loads(body)
            objects = []
            for obj in request["objects"]:
                answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in hub.lfs:
                    answer["actions"] = {"upload": {"href": f"{hub.url}/lfs-upload/{obj['oid']}"}}
                objects.append(answer)
            self._send(200, {"transfer": "basic", "objects": objects})

        def lfs_upload(self, oid: str, body: bytes) -> None:
            if hashlib.sha256(body).hexdigest() != oid:
                return self._send(400, {"error": "sha256 mismatch"})
            with hub.lock:
                hub.lfs[oid] = body
            self._send(200, raw=b"")

        def dataset_page(self, rest: str, body: bytes) -> None:
            if ".git/info/lfs/objects/batch" in rest:
                return self.lfs_batch(rest, body)
            repo_id, action, tail = _split_repo(rest)
            if action != "resolve" or repo_id not in hub.repos:
                return self._not_found("RepoNotFound" if repo_id not in hub.repos else "EntryNotFound")
            path = tail.partition("/")[2]
            content = hub.files(repo_id).get(path)
            if content is None:
                return self._not_found()
            self._send(200, raw=content, headers={"X-Repo-Commit": COMMIT, "ETag": f'"{_git_oid(content)}"'})

    return Handler


# (HTTP method, path prefix, handler method), tried in order.
ROUTES = (("GET", "/api/whoami-v2", "whoami"), ("POST", "/api/repos/create", "create_repo"),
          ("POST", "/api/validate-yaml", "validate_yaml"), ("GET", "/api/datasets/", "api_dataset"),
          ("POST", "/api/datasets/", "api_dataset"), ("PUT", "/lfs-upload/", "lfs_upload"),
          ("GET", "/datasets/", "dataset_page"), ("HEAD", "/datasets/", "dataset_page"),
          ("POST", "/datasets/", "dataset_page"))


def _split_repo(rest: str) -> tuple[str, str, str]:
    """"user/name/action/tail" -> ("user/name", "action", "tail")."""
    parts = rest.split("/", 3)
    repo_id = "/".join(parts[:2])
    return repo_id, parts[2] if len(parts) > 2 else "", parts[3] if len(parts) > 3 else ""


def _git_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@contextlib.contextmanager
def serve_in_thread(hub: FakeHub | None = None) -> Iterator[FakeHub]:
    """Serve ``hub`` on a free loopback port for the duration of the block; ``hub.url`` is its
    endpoint (what HF_ENDPOINT takes)."""
    hub = hub or FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-hub", daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
