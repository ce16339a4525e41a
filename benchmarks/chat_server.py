"""A real chat-completions server on loopback, for the client tests and the client benchmark.

It speaks ``POST /v1/chat/completions`` (and ``/chat/completions``) over HTTP/1.1 with keep-alive,
from a `ThreadingHTTPServer` on a random free port of 127.0.0.1, served by a background thread.
Each reply is a deterministic function of the request's last user message (see `reply_text`),
so reruns get the same replies. Faults are scripted with `ChatServer.fail`:

- ``429``: rate limited, with ``Retry-After`` (``retry_after``) and/or ``retry-after-ms``;
- ``500``, ``503``, ``400``: an error status with an OpenAI-style error body;
- ``401``: an authentication error whose body echoes the request's ``Authorization`` header
  (as a careless server might), to test that the client redacts it;
- ``slow``: stall ``seconds`` before a normal reply (beyond a client's timeout, a timeout);
- ``malformed``: ``200`` with a ``Content-Type: application/json`` body cut off mid-JSON;
- ``drop``: close the connection without any response;
- ``cut``: send the headers and part of the body, then close the connection;
- ``empty``: a well-formed reply with empty content.

A fault applies to requests whose last user message contains ``match`` (any request when
``match`` is None), either to the next ``times`` of them (``None``: all) or to the request
numbers (1-based, counted from the start or the last `reset`) in ``at``. Every request is
recorded (headers, with lower-case names; body; start and end times; outcome), and so is the
largest number in flight. ``python benchmarks/chat_server.py --latency 0.02`` serves from a process of
its own (it prints its URL; ``GET /v1/stats`` counts requests, ``POST /v1/reset`` resets), as the
benchmark runs it.

    with ChatServer(latency=0.02) as server:
        server.fail("429", match="question 3", retry_after="1")
        client = openai.OpenAI(base_url=server.url, api_key="sk-test")
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULT_KINDS = ("429", "500", "503", "400", "401", "slow", "malformed", "drop", "cut", "empty")
ERROR_STATUS = {"429": 429, "500": 500, "503": 503, "400": 400, "401": 401}


def last_user_message(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content, sort_keys=True)
    return ""


def reply_text(messages: list[dict], max_tokens: int | None = None) -> str:
    """The reply to ``messages``: a digest of the last user message and an echo of its start."""
    prompt = last_user_message(messages)
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]
    text = f"proxy {digest}: {' '.join(prompt.split()[:8])}"
    if max_tokens is not None:
        text = " ".join(text.split()[: max(max_tokens, 1)])
    return text


def count_tokens(text: str) -> int:
    return len(text.split())


@dataclass
class Fault:
    kind: str
    match: str | None = None
    times: int | None = 1
    at: frozenset[int] | None = None
    retry_after: str | None = None
    retry_after_ms: int | None = None
    seconds: float = 5.0
    hits: int = 0

    def applies(self, number: int, prompt: str) -> bool:
        if self.match is not None and self.match not in prompt:
            return False
        if self.at is not None:
            return number in self.at
        return self.times is None or self.hits < self.times


@dataclass
class Request:
    number: int
    path: str
    headers: dict[str, str]
    body: object
    start: float
    end: float | None = None
    outcome: str | None = None

    @property
    def messages(self) -> list[dict]:
        return self.body.get("messages", []) if isinstance(self.body, dict) else []

    @property
    def prompt(self) -> str:
        return last_user_message(self.messages)


@dataclass
class _State:
    latency: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0


class ChatServer:
    """The server; `start` (or ``with``) runs it, `stop` ends it. ``url`` is the client's base_url."""

    def __init__(self, latency: float = 0.0, host: str = "127.0.0.1", port: int = 0):
        self._state = _State(latency=latency)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _Server((host, port), _handler_class(self))
        self._thread: threading.Thread | None = None
        self.host, self.port = self._httpd.server_address[:2]

    # -- running ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> ChatServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="chat-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- scripting -------------------------------------------------------------------------------

    @property
    def latency(self) -> float:
        return self._state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._state.latency = seconds

    def fail(
        self,
        kind: str,
        *,
        match: str | None = None,
        times: int | None = 1,
        at: list[int] | None = None,
        retry_after: str | float | None = None,
        retry_after_ms: int | None = None,
        seconds: float = 5.0,
    ) -> Fault:
        """Script a fault; the first fault that applies to a request is the one it gets."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, got {kind!r}")
        fault = Fault(
            kind,
            match=match,
            times=times,
            at=frozenset(at) if at is not None else None,
            retry_after=None if retry_after is None else str(retry_after),
            retry_after_ms=retry_after_ms,
            seconds=seconds,
        )
        with self._lock:
            self._state.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._state.faults.clear()

    def reset(self) -> None:
        """Forget the recorded requests and the faults; request numbers start again at 1."""
        with self._lock:
            self._state.faults.clear()
            self._state.requests.clear()
            self._state.max_in_flight = self._state.in_flight

    # -- what happened ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._state.requests)

    @property
    def max_in_flight(self) -> int:
        return self._state.max_in_flight

    def count(self, match: str | None = None) -> int:
        """Requests whose last user message contains ``match`` (all requests when None)."""
        return sum(1 for r in self.requests if match is None or match in r.prompt)

    def counts_by_prompt(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for request in self.requests:
            counts[request.prompt] = counts.get(request.prompt, 0) + 1
        return counts

    # -- serving (called from the handler threads) -------------------------------------------------

    def _begin(self, path: str, headers: dict[str, str], body: object) -> tuple[Request, Fault | None]:
        with self._lock:
            state = self._state
            request = Request(len(state.requests) + 1, path, headers, body, time.monotonic())
            state.requests.append(request)
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            fault = next((f for f in state.faults if f.applies(request.number, request.prompt)), None)
            if fault is not None:
                fault.hits += 1
        return request, fault

    def _end(self, request: Request, outcome: str) -> None:
        with self._lock:
            self._state.in_flight -= 1
            request.end = time.monotonic()
            request.outcome = outcome

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of 64 new connections must not overflow the accept queue


def _error_body(message: str, kind: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _handler_class(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "admap-test-chat/1.0"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def log_message(self, format, *args):  # noqa: A002 - the base class's signature
            pass

        def _send_json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _close_now(self) -> None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def do_GET(self) -> None:
            """``GET /stats``: what was served, for a client in another process (the benchmark)."""
            if self.path.rstrip("/") not in ("/stats", "/v1/stats"):
                self._send_json(404, _error_body(f"no route {self.path}", "invalid_request_error"))
                return
            self._send_json(200, {"requests": server.count(), "max_in_flight": server.max_in_flight})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if len(raw) < length:  # the client died mid-send (a killed run): no request was made
                self.close_connection = True
                return
            if self.path.rstrip("/") in ("/reset", "/v1/reset"):  # `reset` from another process
                server.reset()
                self._send_json(200, {"requests": 0})
                return
            try:
                body: object = json.loads(raw or b"null")
            except ValueError:
                body = raw.decode("utf-8", "replace")
            headers = {name.lower(): value for name, value in self.headers.items()}
            request, fault = server._begin(self.path, headers, body)
            outcome = fault.kind if fault else "ok"
            try:
                if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                    outcome = "404"
                    self._send_json(404, _error_body(f"no route {self.path}", "invalid_request_error"))
                    return
                if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                    outcome = "400"
                    self._send_json(400, _error_body("messages must be a list", "invalid_request_error"))
                    return
                server._wait(server.latency)
                self._respond(request, fault)
            except OSError:  # the client went away (timed out) first
                outcome = f"{outcome} (client gone)"
                self.close_connection = True
            finally:
                server._end(request, outcome)

        def _respond(self, request: Request, fault: Fault | None) -> None:
            kind = fault.kind if fault else None
            if kind == "drop":
                self._close_now()
                return
            if kind in ERROR_STATUS:
                self._send_error_status(kind, fault)
                return
            if kind == "slow":
                server._wait(fault.seconds)
            body = request.body
            max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
            text = "" if kind == "empty" else reply_text(request.messages, max_tokens)
            prompt_tokens = sum(count_tokens(str(m.get("content", ""))) for m in request.messages)
            completion_tokens = count_tokens(text)
            payload = {
                "id": f"chatcmpl-{request.number}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "unknown"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "length" if max_tokens and completion_tokens >= max_tokens else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
            if kind == "malformed":
                data = json.dumps(payload).encode("utf-8")[:40]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if kind == "cut":
                data = json.dumps(payload).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 3])
                self.wfile.flush()
                self._close_now()
                return
            self._send_json(200, payload)

        def _send_error_status(self, kind: str, fault: Fault) -> None:
            status = ERROR_STATUS[kind]
            headers: dict[str, str] = {}
            if kind == "429":
                if fault.retry_after is not None:
                    headers["Retry-After"] = fault.retry_after
                if fault.retry_after_ms is not None:
                    headers["retry-after-ms"] = str(fault.retry_after_ms)
                body = _error_body("Rate limit reached, try again later", "requests", "rate_limit_exceeded")
            elif kind == "401":
                authorization = self.headers.get("Authorization", "")
                body = _error_body(f"Incorrect API key provided: {authorization}", "invalid_request_error")
                body["error"]["code"] = "invalid_api_key"
            elif kind == "400":
                body = _error_body("Invalid request: bad parameter", "invalid_request_error")
            else:
                body = _error_body("The server had an error while processing your request", "server_error")
            self._send_json(status, body, headers)

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted (or killed), printing the base URL first: a server in its own process."""
    import argparse

    parser = argparse.ArgumentParser(
        description="A chat-completions server on loopback (admap's client tests and benchmark)."
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    args = parser.parse_args(argv)
    with ChatServer(latency=args.latency, port=args.port) as running:
        print(f"serving {running.url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
