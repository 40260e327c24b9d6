"""A Hub-compatible test server: the HTTP endpoints the real ``huggingface_hub`` client uses, in memory, on 127.0.0.1.

The Hub cannot be reached from the test machines, so the tests run the real client against this FastAPI app (served by
uvicorn in a background thread). Implemented, for model repositories only:

- ``POST /api/repos/create`` (401 without a valid token, 403 outside the user's namespace, 409 when it exists). A new
  repository gets an initial commit holding ``.gitattributes``, like the Hub.
- ``POST /api/validate-yaml``: the README front matter must be a YAML mapping.
- ``POST /api/models/{repo}/preupload/{rev}``: every file is uploaded "regular" (inline base64, never LFS), with the
  git blob id of the current file as ``oid`` so unchanged files are skipped by the client.
- ``POST /api/models/{repo}/commit/{rev}``: the NDJSON commit (``header``, ``file``, ``deletedFile``,
  ``deletedFolder``; ``lfsFile`` is refused).
- ``POST /api/models/{repo}/branch/{branch}``.
- ``GET /api/models/{repo}[/revision/{rev}]``: model info (``sha``, ``siblings``, ``tags``, ``cardData``).
- ``GET /api/models``: ``filter`` (every value must be a tag), ``search`` (substring of the id), ``author``, ``limit``.
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag`` (git blob id) and ``Content-Length``;
  errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) as the Hub does.

Tags are derived from the README front matter as on the Hub: its ``tags``, its ``library_name`` and
``base_model:<id>`` for each base model (plus ``base_model:<relation>:<id>`` when ``base_model_relation`` is set).
Private repositories are visible to their owner's token only. Every request is logged in ``HubServer.requests`` as
``(method, path)`` so tests can check what the client fetched.

Example:
    >>> with HubServer(tokens={"hf_alice": "alice"}) as hub:
    ...     api = HfApi(endpoint=hub.url, token="hf_alice")
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
import yaml
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

_YAML_BLOCK = "---"


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob, which the Hub uses as ETag and ``oid`` of regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class _Repo:
    repo_id: str
    owner: str
    private: bool
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> files
    branches: dict[str, str] = field(default_factory=dict)  # branch -> sha
    created: float = field(default_factory=time.time)

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None

    def commit(self, branch: str, files: dict[str, bytes]) -> str:
        parent = self.branches.get(branch, "")
        digest = hashlib.sha1(parent.encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_id(files[path]).encode())
        digest.update(str(len(self.commits)).encode())
        sha = digest.hexdigest()
        self.commits[sha] = dict(files)
        self.branches[branch] = sha
        return sha


class HubServer:
    """The in-memory Hub. Use as a context manager (or `start`/`stop`); ``url`` is its endpoint.

    Requests are served one at a time on uvicorn's event loop thread; `put_files` and `reset` are meant for the test
    thread while no client call is running.

    Args:
        tokens: Valid tokens -> user name. Requests that write need one of them.
    """

    def __init__(self, tokens: dict[str, str] | None = None) -> None:
        self.tokens = dict(tokens or {})
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> HubServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test Hub server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every repository and logged request."""
        self.repos.clear()
        self.requests.clear()

    # -- direct access for tests (bypassing the client, e.g. to plant hostile content) -------------------------
    def put_files(self, repo_id: str, files: dict[str, bytes], *, owner: str = "mallory", private: bool = False) -> str:
        """Create ``repo_id`` if needed and commit ``files`` on ``main``; returns the commit id."""
        repo = self.repos.get(repo_id)
        if repo is None:
            repo = self.repos[repo_id] = _Repo(repo_id, owner, private)
            repo.commit("main", {".gitattributes": b""})
        return repo.commit("main", {**repo.commits[repo.branches["main"]], **files})

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return dict(repo.commits[repo.resolve(revision) or ""])

    # -- helpers ------------------------------------------------------------------------------------------------
    def _user(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return self.tokens.get(auth[7:]) if auth.lower().startswith("bearer ") else None

    def _bad_token(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        return bool(auth) and self._user(request) is None

    @staticmethod
    def _error(
        status: int, message: str, code: str | None = None, body: dict | None = None, **headers: str
    ) -> JSONResponse:
        headers = {"X-Error-Message": message, **headers}
        if code:
            headers["X-Error-Code"] = code
        return JSONResponse({"error": message, **(body or {})}, status_code=status, headers=headers)

    def _readable(self, request: Request, repo_id: str) -> _Repo | JSONResponse:
        if self._bad_token(request):
            return self._error(401, "Invalid credentials in Authorization header")
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and self._user(request) != repo.owner):
            return self._error(404, "Repository not found", "RepoNotFound")
        return repo

    def _writable(self, request: Request, repo_id: str) -> _Repo | JSONResponse:
        user = self._user(request)
        if user is None:
            return self._error(401, "Invalid credentials in Authorization header")
        repo = self._readable(request, repo_id)
        if isinstance(repo, _Repo) and repo.owner != user:
            return self._error(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def _info(self, repo: _Repo, sha: str) -> dict[str, Any]:
        files = repo.commits[sha]
        card = _front_matter(files.get("README.md", b""))
        tags = [str(t) for t in card.get("tags") or [] if isinstance(t, (str, int, float))]
        if isinstance(card.get("library_name"), str):
            tags.append(card["library_name"])
        bases = card.get("base_model")
        relation = card.get("base_model_relation")
        for base in [bases] if isinstance(bases, str) else bases if isinstance(bases, list) else []:
            tags.append(f"base_model:{base}")
            if isinstance(relation, str):
                tags.append(f"base_model:{relation}:{base}")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(repo.created))
        return {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": sha,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": list(dict.fromkeys(tags)),
            "library_name": card.get("library_name"),
            "cardData": card or None,
            "siblings": [{"rfilename": path} for path in sorted(files)],
            "createdAt": stamp,
            "lastModified": stamp,
        }

    # -- the app ------------------------------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def log_requests(request: Request, call_next: Any) -> Response:
            self.requests.append((request.method, request.url.path))
            return await call_next(request)

        @app.post("/api/repos/create")
        async def create_repo(request: Request) -> Response:
            user = self._user(request)
            if user is None:
                return self._error(401, "Invalid credentials in Authorization header")
            body = await request.json()
            if body.get("type", "model") != "model":
                return self._error(400, "this test server only hosts model repositories")
            namespace = body.get("organization") or user
            repo_id = f"{namespace}/{body['name']}"
            if repo_id in self.repos:
                # Like the Hub, a 409 still carries the URL (the client reads it when exist_ok=True).
                return self._error(409, "You already created this model repo", body={"url": f"{self.url}/{repo_id}"})
            if namespace != user:
                return self._error(403, f"You don't have the rights to create a model under the namespace {namespace}")
            private = body.get("visibility") == "private" or bool(body.get("private"))
            repo = self.repos[repo_id] = _Repo(repo_id, user, private)
            repo.commit("main", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
            return JSONResponse({"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id})

        @app.post("/api/validate-yaml")
        async def validate_yaml(request: Request) -> Response:
            body = await request.json()
            try:
                _front_matter(body.get("content", "").encode(), strict=True)
            except ValueError as e:
                return JSONResponse({"errors": [{"message": str(e)}]}, status_code=400)
            return JSONResponse({"errors": [], "warnings": []})

        @app.post("/api/models/{namespace}/{name}/preupload/{revision}")
        async def preupload(namespace: str, name: str, revision: str, request: Request) -> Response:
            repo = self._writable(request, f"{namespace}/{name}")
            if not isinstance(repo, _Repo):
                return repo
            sha = repo.resolve(revision)
            current = repo.commits[sha] if sha else {}
            files = (await request.json())["files"]
            out = [
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_id(current[f["path"]]) if f["path"] in current else None,
                }
                for f in files
            ]
            return JSONResponse({"files": out, "commitOid": sha})

        @app.post("/api/models/{namespace}/{name}/commit/{revision}")
        async def commit(namespace: str, name: str, revision: str, request: Request) -> Response:
            repo = self._writable(request, f"{namespace}/{name}")
            if not isinstance(repo, _Repo):
                return repo
            if revision not in repo.branches:
                return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            files = dict(repo.commits[repo.branches[revision]])
            for line in (await request.body()).splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    if value["path"] not in files:
                        return self._error(404, "A file with this name doesn't exist", "EntryNotFound")
                    del files[value["path"]]
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: d for p, d in files.items() if not p.startswith(prefix)}
                elif key == "lfsFile":
                    return self._error(400, "this test server does not implement LFS uploads")
            sha = repo.commit(revision, files)
            url = f"{self.url}/{repo.repo_id}/commit/{sha}"
            return JSONResponse({"success": True, "commitOid": sha, "commitUrl": url})

        @app.post("/api/models/{namespace}/{name}/branch/{branch}")
        async def create_branch(namespace: str, name: str, branch: str, request: Request) -> Response:
            repo = self._writable(request, f"{namespace}/{name}")
            if not isinstance(repo, _Repo):
                return repo
            if branch in repo.branches:
                return self._error(409, f"Branch {branch} already exists")
            start = (await request.json() if await request.body() else {}).get("startingPoint") or "main"
            sha = repo.resolve(start)
            if sha is None:
                return self._error(404, f"Invalid rev id: {start}", "RevisionNotFound")
            repo.branches[branch] = sha
            return JSONResponse({})

        @app.get("/api/models")
        async def list_models(request: Request) -> Response:
            if self._bad_token(request):
                return self._error(401, "Invalid credentials in Authorization header")
            filters = request.query_params.getlist("filter")
            search = (request.query_params.get("search") or "").lower()
            author = request.query_params.get("author")
            limit = int(request.query_params.get("limit") or 1000)
            user = self._user(request)
            out = []
            for repo in sorted(self.repos.values(), key=lambda r: r.repo_id):
                if repo.private and repo.owner != user:
                    continue
                info = self._info(repo, repo.branches["main"])
                if all(f in info["tags"] for f in filters) and search in repo.repo_id.lower():
                    if author is None or info["author"] == author:
                        out.append(info)
            return JSONResponse(out[:limit])

        @app.get("/api/models/{namespace}/{name}")
        @app.get("/api/models/{namespace}/{name}/revision/{revision}")
        async def model_info(namespace: str, name: str, request: Request, revision: str = "main") -> Response:
            repo = self._readable(request, f"{namespace}/{name}")
            if not isinstance(repo, _Repo):
                return repo
            sha = repo.resolve(revision)
            if sha is None:
                return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return JSONResponse(self._info(repo, sha))

        @app.api_route("/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
        async def resolve(namespace: str, name: str, revision: str, path: str, request: Request) -> Response:
            repo = self._readable(request, f"{namespace}/{name}")
            if not isinstance(repo, _Repo):
                return repo
            sha = repo.resolve(revision)
            if sha is None:
                return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            data = repo.commits[sha].get(path)
            if data is None:
                return self._error(404, "Entry not found", "EntryNotFound", **{"X-Repo-Commit": sha})
            headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_id(data)}"', "Content-Length": str(len(data))}
            body = b"" if request.method == "HEAD" else data
            return Response(body, headers=headers, media_type="application/octet-stream")

        return app


def _front_matter(readme: bytes, *, strict: bool = False) -> dict[str, Any]:
    """The YAML metadata block at the top of a README (empty when there is none)."""
    text = readme.decode("utf-8", errors="replace").lstrip("\ufeff")
    if not text.startswith(_YAML_BLOCK):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        if strict:
            raise ValueError("the metadata block is not closed with ---")
        return {}
    try:
        data = yaml.safe_load(text[3:end])
    except yaml.YAMLError as e:
        if strict:
            raise ValueError(f"invalid YAML: {e}") from None
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        if strict:
            raise ValueError("the metadata block must be a mapping")
        return {}
    return data
