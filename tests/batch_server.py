"""A fake OpenAI Batch API on 127.0.0.1 for tests: files, batches and file contents over real HTTP.

It implements what the ``openai`` client calls for a batch: ``POST /v1/files`` (multipart upload),
``POST /v1/batches``, ``GET /v1/batches`` (list), ``GET /v1/batches/{id}`` and
``GET /v1/files/{id}/content``. A batch is ``validating`` on its first poll, ``in_progress`` until
its ``polls_to_complete``-th poll, then ends with the next outcome of ``outcomes`` (default
``completed``) and gets its output and error files. Each reply is a function of the messages
(``reply_for``), with token usage (``usage_for``).

Scripting: requests whose messages contain a string in ``fail_markers`` go to the error file (HTTP
400), those containing one in ``drop_markers`` are left out of both files; ``outcomes`` pops
``failed``/``expired``/``cancelled`` for the next batches (``expired_partial`` lines of an expired
batch still complete); ``retrieve_errors`` answers that many polls with a 500; ``lose_create_answers``
creates that many batches but answers 500, as if the answer was lost; ``echo_auth`` puts the
bearer token into error messages (a careless server) so that redaction can be checked.
Every request is recorded in ``log`` as ``(method, path)``.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.loopback import LoopbackServer


def reply_for(messages: list[dict]) -> str:
    return f"reply to: {messages[-1]['content']}"


def usage_for(messages: list[dict], reply: str) -> dict:
    prompt = sum(len(m["content"].split()) for m in messages)
    completion = len(reply.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class BatchServer(LoopbackServer):
    def __init__(self, polls_to_complete: int = 2):
        self.polls_to_complete = polls_to_complete
        self.fail_markers: set[str] = set()
        self.drop_markers: set[str] = set()
        self.outcomes: list[str] = []
        self.expired_partial = 0
        self.retrieve_errors = 0
        self.lose_create_answers = 0
        self.echo_auth = False
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.log: list[tuple[str, str]] = []
        self.auth_headers: list[str] = []
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        super().__init__(self._handler())

    @property
    def url(self) -> str:
        return f"{self.address}/v1"

    # ---------------------------------------------------------------- counts for tests

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.log if m == method and p == path)

    @property
    def uploads(self) -> int:
        return sum(1 for f in self.files.values() if f["purpose"] == "batch")

    @property
    def created(self) -> int:
        return len(self.batches)

    def input_lines(self, batch_id: str) -> list[dict]:
        content = self.files[self.batches[batch_id]["input_file_id"]]["content"]
        return [json.loads(line) for line in content.decode("utf-8").splitlines() if line.strip()]

    # ---------------------------------------------------------------- objects

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):04d}"

    def _add_file(self, content: bytes, filename: str, purpose: str) -> dict:
        file = {
            "id": self._new_id("file"),
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[file["id"]] = {**file, "content": content}
        return file

    @staticmethod
    def _public(record: dict) -> dict:
        return {k: v for k, v in record.items() if not k.startswith("_") and k != "content"}

    def _poll(self, batch: dict, auth: str) -> None:
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            return
        batch["_polls"] += 1
        if batch["_polls"] < self.polls_to_complete:
            batch["status"] = "validating" if batch["_polls"] == 1 else "in_progress"
            return
        self._end(batch, batch["_outcome"], auth)

    def _end(self, batch: dict, outcome: str, auth: str) -> None:
        lines = self.input_lines(batch["id"])
        now = int(time.time())
        batch["status"] = outcome
        batch[f"{outcome}_at"] = now
        if outcome == "failed":
            batch["errors"] = {
                "object": "list",
                "data": [{"code": "invalid_request", "message": "scripted failure", "line": 1, "param": None}],
            }
            batch["request_counts"] = {"total": 0, "completed": 0, "failed": 0}
            return
        if outcome in ("expired", "cancelled"):
            lines = lines[: self.expired_partial]
        output, errors = [], []
        for line in lines:
            messages = line["body"]["messages"]
            text = " ".join(m["content"] for m in messages)
            if any(marker in text for marker in self.drop_markers):
                continue
            request_id = self._new_id("batch_req")
            if any(marker in text for marker in self.fail_markers):
                token = auth.removeprefix("Bearer ")
                message = "scripted request failure" + (f" ({token})" if self.echo_auth else "")
                body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
                response = {"status_code": 400, "request_id": request_id, "body": body}
                errors.append({"id": request_id, "custom_id": line["custom_id"], "response": response, "error": None})
                continue
            reply = reply_for(messages)
            completion = {
                "id": f"chatcmpl-{request_id}",
                "object": "chat.completion",
                "created": now,
                "model": line["body"]["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": usage_for(messages, reply),
            }
            response = {"status_code": 200, "request_id": request_id, "body": completion}
            output.append({"id": request_id, "custom_id": line["custom_id"], "response": response, "error": None})
        for kind, records in (("output_file_id", output), ("error_file_id", errors)):
            if records:
                content = "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")
                batch[kind] = self._add_file(content, f"{batch['id']}_{kind}.jsonl", "batch_output")["id"]
        batch["request_counts"] = {
            "total": len(self.input_lines(batch["id"])),
            "completed": len(output),
            "failed": len(errors),
        }

    # ---------------------------------------------------------------- HTTP

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, payload: dict | bytes) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header(
                    "Content-Type", "application/octet-stream" if isinstance(payload, bytes) else "application/json"
                )
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str) -> None:
                self._send(status, {"error": {"message": message, "type": "invalid_request_error", "code": None}})

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _route(self, method: str) -> None:
                path = urlsplit(self.path).path
                body = self._body() if method == "POST" else b""
                auth = self.headers.get("Authorization", "")
                with server.lock:
                    server.log.append((method, path))
                    server.auth_headers.append(auth)
                    try:
                        status, payload = server._dispatch(method, path, body, self.headers, auth)
                    except Exception as error:  # a bug in the fake: answer, do not hang the client
                        status, payload = 500, {"error": {"message": f"fake server error: {error!r}"}}
                if status >= 400 and isinstance(payload, str):
                    self._error(status, payload)
                else:
                    self._send(status, payload)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

        return Handler

    def _dispatch(self, method: str, path: str, body: bytes, headers, auth: str):
        parts = path.strip("/").split("/")
        if parts[:1] != ["v1"]:
            return 404, f"no route {path}"
        parts = parts[1:]
        if method == "POST" and parts == ["files"]:
            fields = _multipart(body, headers.get("Content-Type", ""))
            content, filename = fields["file"]
            purpose = fields["purpose"][0].decode("utf-8")
            return 200, self._add_file(content, filename or "upload.jsonl", purpose)
        if method == "GET" and len(parts) == 3 and parts[0] == "files" and parts[2] == "content":
            file = self.files.get(parts[1])
            return (200, file["content"]) if file else (404, f"no file {parts[1]}")
        if method == "POST" and parts == ["batches"]:
            request = json.loads(body)
            if request["input_file_id"] not in self.files:
                return 404, f"no file {request['input_file_id']}"
            batch = {
                "id": self._new_id("batch"),
                "object": "batch",
                "endpoint": request["endpoint"],
                "errors": None,
                "input_file_id": request["input_file_id"],
                "completion_window": request["completion_window"],
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": int(time.time()),
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "metadata": request.get("metadata"),
                "_polls": 0,
                "_outcome": self.outcomes.pop(0) if self.outcomes else "completed",
            }
            self.batches[batch["id"]] = batch
            batch["request_counts"]["total"] = len(self.input_lines(batch["id"]))
            if self.lose_create_answers:
                self.lose_create_answers -= 1
                return 500, "the answer was lost"
            return 200, self._public(batch)
        if method == "GET" and parts == ["batches"]:
            data = [self._public(b) for b in reversed(self.batches.values())]
            return 200, {"object": "list", "data": data, "first_id": None, "last_id": None, "has_more": False}
        if method == "GET" and len(parts) == 2 and parts[0] == "batches":
            batch = self.batches.get(parts[1])
            if batch is None:
                return 404, f"no batch {parts[1]}"
            if self.retrieve_errors:
                self.retrieve_errors -= 1
                return 500, "try again"
            self._poll(batch, auth)
            return 200, self._public(batch)
        return 404, f"no route {method} {path}"


def _multipart(body: bytes, content_type: str) -> dict[str, tuple[bytes, str | None]]:
    """The fields of a multipart/form-data body: name -> (content, filename)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[name] = (part.get_payload(decode=True), part.get_filename())
    return fields
