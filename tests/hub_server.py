"""A fake Hugging Face Hub on 127.0.0.1 for tests: dataset repos written and read over real HTTP.

It implements what ``huggingface_hub``'s `HfApi` calls to create a dataset repo and upload a folder
to it (without Xet, the legacy path: ``HF_HUB_DISABLE_XET``), and what ``datasets.load_dataset`` and
``HfFileSystem`` call to read one back, streaming included:

- ``POST /api/repos/create``; ``POST /api/validate-yaml`` (refuses a README whose front matter is not
  a YAML mapping); ``POST /api/datasets/{repo}/branch/{branch}``;
- ``POST /api/datasets/{repo}/preupload/{rev}`` (Parquet, PNG and files over 10 MB are LFS, as the
  Hub's default ``.gitattributes`` makes them), ``POST /datasets/{repo}.git/info/lfs/objects/batch``
  (uploads go to this server: ``PUT /lfs/upload/{oid}``, checked against the oid, then
  ``POST /lfs/verify``), ``POST /api/datasets/{repo}/commit/{rev}`` (the ndjson commit);
- ``GET /api/datasets/{repo}[/revision/{rev}]`` (info: sha, siblings, cardData),
  ``GET /api/datasets/{repo}/tree/{rev}[/{path}]`` (listing, for ``delete_patterns`` and data files),
  ``HEAD``/``GET /datasets/{repo}/resolve/{rev}/{path}`` (with ``Range``, as streaming reads).

A revision is a branch or a full commit sha. Unknown repos, revisions and files get 404 with the
``X-Error-Code`` the Hub sends, so that the clients raise their own error types. Every request is
logged as a `Request` (method, path, status, body bytes sent), so that tests count what was
downloaded; ``authorizations`` keeps the ``Authorization`` headers received.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from tests.loopback import LoopbackServer

LFS_SUFFIXES = (".parquet", ".png", ".arrow")
LFS_MIN_BYTES = 10 * 1024 * 1024
REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = [
    ("POST", re.compile(r"/api/repos/create"), "create_repo"),
    ("POST", re.compile(r"/api/validate-yaml"), "validate_yaml"),
    ("GET", re.compile(rf"/api/datasets/{REPO}(?:/revision/(?P<rev>[^/]+))?"), "info"),
    ("POST", re.compile(rf"/api/datasets/{REPO}/preupload/(?P<rev>[^/]+)"), "preupload"),
    ("POST", re.compile(rf"/api/datasets/{REPO}/commit/(?P<rev>[^/]+)"), "commit"),
    ("POST", re.compile(rf"/api/datasets/{REPO}/branch/(?P<branch>[^/]+)"), "create_branch"),
    ("GET", re.compile(rf"/api/datasets/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"), "tree"),
    ("POST", re.compile(rf"/datasets/{REPO}\.git/info/lfs/objects/batch"), "lfs_batch"),
    ("PUT", re.compile(r"/lfs/upload/(?P<oid>[0-9a-f]{64})"), "lfs_upload"),
    ("POST", re.compile(r"/lfs/verify"), "lfs_verify"),
    ("GET", re.compile(rf"/datasets/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), "resolve"),
    ("HEAD", re.compile(rf"/datasets/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), "resolve"),
]


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class StoredFile:
    data: bytes
    lfs: bool

    @property
    def oid(self) -> str:
        return git_blob_oid(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid


@dataclass
class Repo:
    private: bool
    commits: dict[str, dict[str, StoredFile]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int
    sent_bytes: int


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, **extra):
        self.status, self.code, self.message, self.extra = status, code, message, extra


class HubServer(LoopbackServer):
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.log: list[Request] = []
        self.authorizations: list[str] = []
        self.lock = threading.Lock()
        self._commit_numbers = itertools.count(1)
        super().__init__(self._handler())

    @property
    def url(self) -> str:
        return self.address

    # ---------------------------------------------------------------- for tests

    def add_commit(
        self, repo_id: str, files: dict[str, bytes], *, branch: str = "main", message: str = "seed", replace=False
    ) -> str:
        """Commit ``files`` to ``repo_id`` directly (the repo is created if new); returns the commit sha.
        ``replace``: the commit holds ``files`` alone, not added to the branch's files."""
        with self.lock:
            repo = self.repos.get(repo_id) or self._new_repo(repo_id, private=False)
            tree = {} if replace else dict(repo.commits[repo.branches[branch]])
            for path, data in files.items():
                tree[path] = StoredFile(data, lfs=self._is_lfs(path, len(data)))
            return self._store_commit(repo, branch, tree, message)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return {path: stored.data for path, stored in repo.commits[self._resolve(repo, revision)].items()}

    def lfs_paths(self, repo_id: str, revision: str = "main") -> set[str]:
        repo = self.repos[repo_id]
        return {path for path, stored in repo.commits[self._resolve(repo, revision)].items() if stored.lfs}

    def downloads(self, repo_id: str) -> dict[str, int]:
        """Bytes of file contents sent per path of ``repo_id`` (GET on ``resolve``; HEAD sends none)."""
        sent: dict[str, int] = {}
        prefix = f"/datasets/{repo_id}/resolve/"
        for request in self.log:
            if request.method == "GET" and request.path.startswith(prefix):
                path = unquote(request.path[len(prefix) :].split("/", 1)[1])
                sent[path] = sent.get(path, 0) + request.sent_bytes
        return sent

    # ---------------------------------------------------------------- the repository model

    def _new_repo(self, repo_id: str, *, private: bool) -> Repo:
        repo = Repo(private=private)
        self.repos[repo_id] = repo
        # The Hub's first commit of a new repo: its .gitattributes.
        attributes = b"".join(b"*%s filter=lfs diff=lfs merge=lfs -text\n" % s.encode() for s in LFS_SUFFIXES)
        self._store_commit(repo, "main", {".gitattributes": StoredFile(attributes, lfs=False)}, "initial commit")
        return repo

    def _store_commit(self, repo: Repo, branch: str, tree: dict[str, StoredFile], message: str) -> str:
        sha = hashlib.sha1(f"commit {next(self._commit_numbers)} {message}".encode()).hexdigest()
        repo.commits[sha] = tree
        repo.branches[branch] = sha
        repo.messages[sha] = message
        return sha

    @staticmethod
    def _is_lfs(path: str, size: int) -> bool:
        return path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_BYTES

    def _repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise HubError(404, "RepoNotFound", f"Repository {repo_id} not found")
        return self.repos[repo_id]

    @staticmethod
    def _resolve(repo: Repo, revision: str) -> str:
        revision = unquote(revision)
        if revision in repo.branches:
            return repo.branches[revision]
        if revision in repo.commits:
            return revision
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")

    def _tree(self, repo_id: str, revision: str) -> tuple[str, dict[str, StoredFile]]:
        repo = self._repo(repo_id)
        sha = self._resolve(repo, revision)
        return sha, repo.commits[sha]

    @staticmethod
    def _entry(path: str, stored: StoredFile | None) -> dict:
        if stored is None:
            return {"type": "directory", "oid": git_blob_oid(path.encode()), "path": path}
        entry = {"type": "file", "oid": stored.oid, "size": len(stored.data), "path": path}
        if stored.lfs:
            entry["lfs"] = {"oid": stored.sha256, "size": len(stored.data), "pointerSize": 134}
        return entry

    # ---------------------------------------------------------------- endpoints: (status, headers, body)

    def create_repo(self, request) -> tuple:
        payload = request.json()
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if payload.get("type") != "dataset":
            raise HubError(400, None, f"this fake Hub keeps dataset repos only, not {payload.get('type')!r}")
        with self.lock:
            if repo_id in self.repos:
                # The Hub's conflict answer names the repo, which `create_repo(exist_ok=True)` returns.
                raise HubError(409, None, "You already created this dataset repo", url=f"{self.url}/datasets/{repo_id}")
            self._new_repo(repo_id, private=payload.get("visibility") == "private")
        return 200, {}, {"url": f"{self.url}/datasets/{repo_id}", "name": repo_id}

    def validate_yaml(self, request) -> tuple:
        content = request.json()["content"]
        match = re.match(r"---\n(.*?)\n---\n", content, re.DOTALL)
        metadata = yaml.safe_load(match.group(1)) if match else None
        if not isinstance(metadata, dict):
            return 400, {}, {"errors": [{"message": "README.md has no YAML front matter mapping"}], "warnings": []}
        return 200, {}, {"errors": [], "warnings": []}

    def info(self, request, repo, rev=None) -> tuple:
        sha, tree = self._tree(repo, rev or "main")
        card = {}
        if "README.md" in tree:
            match = re.match(r"---\n(.*?)\n---\n", tree["README.md"].data.decode(), re.DOTALL)
            card = yaml.safe_load(match.group(1)) if match else {}
        body = {
            "_id": hashlib.md5(repo.encode()).hexdigest()[:24],
            "id": repo,
            "author": repo.split("/")[0],
            "sha": sha,
            "private": self.repos[repo].private,
            "gated": False,
            "disabled": False,
            "lastModified": "2026-01-01T00:00:00.000Z",
            "cardData": card,
            "tags": card.get("tags", []),
            "siblings": [{"rfilename": path} for path in sorted(tree)],
        }
        return 200, {}, body

    def create_branch(self, request, repo, branch) -> tuple:
        branch = unquote(branch)
        with self.lock:
            stored = self._repo(repo)
            if branch in stored.branches:
                raise HubError(409, None, f"Reference {branch} already exists")
            payload = request.json() if request.body else {}
            stored.branches[branch] = self._resolve(stored, payload.get("startingPoint") or "main")
        return 200, {}, {}

    def preupload(self, request, repo, rev) -> tuple:
        _, tree = self._tree(repo, rev)
        files = []
        for item in request.json()["files"]:
            existing = tree.get(item["path"])
            lfs = self._is_lfs(item["path"], item["size"])
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": existing.etag if existing else None,
                }
            )
        return 200, {}, {"files": files, "commitOid": self._resolve(self._repo(repo), rev)}

    def lfs_batch(self, request, repo) -> tuple:
        self._repo(repo)
        objects = []
        for item in request.json()["objects"]:
            entry = {"oid": item["oid"], "size": item["size"]}
            if item["oid"] not in self.lfs_objects:
                entry["actions"] = {
                    "upload": {"href": f"{self.url}/lfs/upload/{item['oid']}"},
                    "verify": {"href": f"{self.url}/lfs/verify"},
                }
            objects.append(entry)
        return 200, {}, {"transfer": "basic", "objects": objects}

    def lfs_upload(self, request, oid) -> tuple:
        if hashlib.sha256(request.body).hexdigest() != oid:
            raise HubError(400, None, "uploaded content does not match its oid")
        with self.lock:
            self.lfs_objects[oid] = request.body
        return 200, {}, {}

    def lfs_verify(self, request) -> tuple:
        payload = request.json()
        stored = self.lfs_objects.get(payload["oid"])
        if stored is None or len(stored) != payload["size"]:
            raise HubError(404, None, f"object {payload['oid']} was not uploaded")
        return 200, {}, {}

    def commit(self, request, repo, rev) -> tuple:
        lines = [json.loads(line) for line in request.body.decode().splitlines() if line.strip()]
        header, operations = lines[0], lines[1:]
        if header["key"] != "header":
            raise HubError(400, None, "a commit starts with its header")
        with self.lock:
            stored = self._repo(repo)
            branch = unquote(rev)
            if branch not in stored.branches:
                raise HubError(404, "RevisionNotFound", f"Invalid rev id: {branch}")
            tree = dict(stored.commits[stored.branches[branch]])
            for operation in operations:
                value = operation["value"]
                if operation["key"] == "file":
                    data = base64.b64decode(value["content"])
                    tree[value["path"]] = StoredFile(data, lfs=False)
                elif operation["key"] == "lfsFile":
                    if value["oid"] not in self.lfs_objects:
                        raise HubError(400, None, f"LFS object {value['oid']} ({value['path']}) was never uploaded")
                    tree[value["path"]] = StoredFile(self.lfs_objects[value["oid"]], lfs=True)
                elif operation["key"] == "deletedFile":
                    tree.pop(value["path"], None)
                elif operation["key"] == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    tree = {path: f for path, f in tree.items() if not path.startswith(folder)}
                else:
                    raise HubError(400, None, f"unknown commit operation {operation['key']!r}")
            sha = self._store_commit(stored, branch, tree, header["value"]["summary"])
        return 200, {}, {"commitUrl": f"{self.url}/datasets/{repo}/commit/{sha}", "commitOid": sha, "success": True}

    def tree(self, request, repo, rev, path=None) -> tuple:
        _, files = self._tree(repo, rev)
        recursive = request.query.get("recursive", ["false"])[0].lower() == "true"
        base = unquote(path or "").strip("/")
        prefix = f"{base}/" if base else ""
        if base and base not in files and not any(p.startswith(prefix) for p in files):
            raise HubError(404, "EntryNotFound", f"{base} does not exist")
        entries: dict[str, dict] = {}
        for file_path in sorted(files):
            if not file_path.startswith(prefix):
                continue
            parts = PurePosixPath(file_path[len(prefix) :]).parts
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(folder, self._entry(folder, None))
            if recursive or len(parts) == 1:
                entries[file_path] = self._entry(file_path, files[file_path])
        return 200, {}, list(entries.values())

    def resolve(self, request, repo, rev, path) -> tuple:
        sha, files = self._tree(repo, rev)
        path = unquote(path)
        if path not in files:
            raise HubError(404, "EntryNotFound", f"{path} does not exist at {sha}")
        stored = files[path]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{stored.etag}"', "Accept-Ranges": "bytes"}
        if stored.lfs:
            headers.update({"X-Linked-Etag": f'"{stored.etag}"', "X-Linked-Size": str(len(stored.data))})
        data = stored.data
        wanted = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("Range", ""))
        if wanted:
            first = int(wanted.group(1)) if wanted.group(1) else max(len(data) - int(wanted.group(2)), 0)
            last = int(wanted.group(2)) if wanted.group(1) and wanted.group(2) else len(data) - 1
            last = min(last, len(data) - 1)
            if first >= len(data):
                return 416, {"Content-Range": f"bytes */{len(data)}"}, b""
            headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
            return 206, headers, data[first : last + 1]
        return 200, headers, data

    # ---------------------------------------------------------------- HTTP

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        chunk = self.rfile.read(size)
                        self.rfile.readline()
                        if size == 0:
                            return b"".join(chunks)
                        chunks.append(chunk)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                self.body = self._body()
                self.query = parse_qs(parts.query)
                if self.headers.get("Authorization"):
                    with server.lock:
                        server.authorizations.append(self.headers["Authorization"])
                try:
                    status, headers, body = self._route(method, parts.path)
                except HubError as error:
                    headers = {"X-Error-Message": error.message}
                    if error.code:
                        headers["X-Error-Code"] = error.code
                    status, body = error.status, {"error": error.message, **error.extra}
                if not isinstance(body, bytes):
                    body = json.dumps(body).encode()
                    headers.setdefault("Content-Type", "application/json")
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                sent = 0 if method == "HEAD" else len(body)
                if sent:
                    self.wfile.write(body)
                with server.lock:
                    server.log.append(Request(method, parts.path, status, sent))

            def _route(self, method: str, path: str) -> tuple:
                for route_method, pattern, name in ROUTES:
                    match = pattern.fullmatch(path)
                    if route_method == method and match:
                        arguments = {k: v for k, v in match.groupdict().items() if v is not None}
                        return getattr(server, name)(self, **arguments)
                raise HubError(404, None, f"the fake Hub has no {method} {path}")

            def json(self):
                return json.loads(self.body or b"{}")

            def do_GET(self):
                self._serve("GET")

            def do_HEAD(self):
                self._serve("HEAD")

            def do_POST(self):
                self._serve("POST")

            def do_PUT(self):
                self._serve("PUT")

        return Handler
