"""A small OpenAI-compatible chat server on 127.0.0.1 for the tests, with injectable faults.

It answers ``POST .../chat/completions`` for the models it knows, with an answer computed from
the last user message (by default: the prompt's goal, wrapped in chat-style prose, so tests can
tell which answer belongs to which item). Faults are planned per prompt: ``plan(marker,
["429", "500", ...])`` makes the requests whose last message contains ``marker`` fail in that
order, one fault per hit, before they are answered normally.

Fault kinds: ``"429"`` (with ``Retry-After``), ``"500"``, ``"503"``, ``"timeout"`` (sleeps past
the client's timeout), ``"malformed"`` (200 with a body that is not JSON), ``"empty"`` (200 with
an empty answer), ``"null"`` (200 with ``"content": null``), ``"404"``, ``"drip"`` (a 200 whose
body comes one byte per ``drip_interval`` seconds), ``"drip-headers"`` (the status line and
headers themselves one byte at a time), ``"huge"`` (a body of ``huge_bytes`` with its
Content-Length), ``"huge-unannounced"`` (the same without one, ended by closing the
connection), ``"slow"`` (answers after ``slow_sleep`` seconds).

Every slow fault is bounded in bytes and seconds, and stops when the client goes away or the
server closes. ``required_query`` makes every request without those query parameters a 401
(for endpoints that take their key in the URL). Written with the standard library's
``http.server`` because the tests must not depend on anything that is not installed; it serves
only loopback.
"""
from __future__ import annotations

import collections
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def default_answer(prompt: str) -> str:
    """Chat-style prose around a 'derivation': the goal after 'then obtain' of the last prompt."""
    query = prompt.rsplit("Prompt:", 1)[-1].strip()
    goal = query.rsplit("then obtain", 1)[-1].strip()
    return f"Sure, here is the derivation.\n\n```latex\nDerivation: $$ {goal} $$\n```\nI hope this helps."


class FakeChatServer:
    def __init__(self, models=("test-model",), answer=default_answer, retry_after: str = "1",
                 timeout_sleep: float = 1.0, answer_delay: float = 0.0, drip_interval: float = 1.0,
                 huge_bytes: int = 60_000_000, slow_sleep: float = 30.0, required_query: dict | None = None):
        self.models = set(models)
        self.answer = answer
        self.retry_after = retry_after
        self.timeout_sleep = timeout_sleep
        self.answer_delay = answer_delay
        self.drip_interval = drip_interval
        self.drip_limit = 120  # bytes, then the drip gives up (about two minutes at 1 byte/s)
        self.huge_bytes = huge_bytes
        self.slow_sleep = slow_sleep
        self.required_query = dict(required_query or {})
        self.closing = threading.Event()  # set on exit: every slow fault stops at once
        self.lock = threading.Lock()
        self.sent_bytes: collections.Counter = collections.Counter()  # fault kind -> body bytes written
        self.paths: list[str] = []  # every request's path, with its query
        self.faults: dict[str, collections.deque] = {}
        self.hits: collections.Counter = collections.Counter()  # prompt -> requests received
        self.answered: collections.Counter = collections.Counter()  # prompt -> 200 with an answer
        self.requests: list[dict] = []  # every request body, with its headers' names
        self.authorizations: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    # -------------------------------------------------------------------------------- control

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def plan(self, marker: str, faults: list[str]) -> None:
        with self.lock:
            self.faults.setdefault(marker, collections.deque()).extend(faults)

    def total_hits(self) -> int:
        with self.lock:
            return sum(self.hits.values())

    def total_answered(self) -> int:
        with self.lock:
            return sum(self.answered.values())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()

    # -------------------------------------------------------------------------------- serving

    def _next_fault(self, prompt: str) -> str | None:
        with self.lock:
            self.hits[prompt] += 1
            for marker, queue in self.faults.items():
                if marker in prompt and queue:
                    return queue.popleft()
        return None

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, headers: dict | None = None):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout fault): nothing to tell it

            def _error(self, status: int, message: str, headers: dict | None = None):
                body = {"error": {"message": message, "type": "test_error", "code": status}}
                self._send(status, json.dumps(body).encode(), headers)

            def _drip(self, data: bytes, kind: str):
                """Write ``data`` one byte per drip_interval, until the client goes or the limit."""
                for i, byte in enumerate(data[:server.drip_limit]):
                    if server.closing.wait(server.drip_interval if i else 0):
                        return
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:
                        return
                    with server.lock:
                        server.sent_bytes[kind] += 1

            def _huge(self, announce: bool):
                kind = "huge" if announce else "huge-unannounced"
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    if announce:
                        self.send_header("Content-Length", str(server.huge_bytes))
                    self.end_headers()
                    chunk = b" " * 65536
                    sent = 0
                    while sent < server.huge_bytes and not server.closing.is_set():
                        piece = chunk[:server.huge_bytes - sent]
                        self.wfile.write(piece)
                        sent += len(piece)
                        with server.lock:
                            server.sent_bytes[kind] += len(piece)
                except OSError:
                    pass  # the client stopped reading: what the test wants
                self.close_connection = True

            def _reply(self, model: str, content, prompt: str) -> bytes:
                text = content or ""
                return json.dumps({
                    "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                              "total_tokens": len(prompt.split()) + len(text.split())},
                }).encode()

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server.lock:
                    server.requests.append(body)
                    server.authorizations.append(self.headers.get("Authorization", ""))
                    server.paths.append(self.path)
                route, _, query = self.path.partition("?")
                if not route.rstrip("/").endswith("/chat/completions"):
                    return self._error(404, f"no route {self.path}")
                given = dict(urllib.parse.parse_qsl(query))
                if any(given.get(name) != value for name, value in server.required_query.items()):
                    return self._error(401, f"missing or wrong key in {self.path}")
                messages = body.get("messages") or []
                prompt = messages[-1]["content"] if messages else ""
                fault = server._next_fault(prompt)
                if body.get("model") not in server.models or fault == "404":
                    return self._error(404, f"The model `{body.get('model')}` does not exist")
                if fault == "429":
                    return self._error(429, "rate limited", {"Retry-After": server.retry_after})
                if fault in ("500", "503"):
                    return self._error(int(fault), "server error")
                if fault == "timeout":
                    time.sleep(server.timeout_sleep)
                    return self._error(500, "too late")
                if fault == "malformed":
                    return self._send(200, b'{"id": "x", "choices": [ {"message": ')
                if fault in ("huge", "huge-unannounced"):
                    return self._huge(announce=fault == "huge")
                if fault == "slow" and server.closing.wait(server.slow_sleep):
                    return None
                content = "" if fault == "empty" else None if fault == "null" else server.answer(prompt)
                reply = self._reply(body.get("model"), content, prompt)
                if fault == "drip":
                    head = (f"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                            f"Content-Length: {len(reply)}\r\n\r\n").encode()
                    self.close_connection = True
                    try:
                        self.wfile.write(head)
                    except OSError:
                        return None
                    return self._drip(reply, fault)
                if fault == "drip-headers":
                    self.close_connection = True
                    head = f"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nX-Padding: {'x' * 100}\r\n"
                    return self._drip(head.encode(), fault)
                if server.answer_delay:
                    time.sleep(server.answer_delay)
                if content:
                    with server.lock:
                        server.answered[prompt] += 1
                self._send(200, reply)

        return Handler


if __name__ == "__main__":  # a server to try the CLI against by hand
    with FakeChatServer() as fake:
        print(fake.base_url, flush=True)
        threading.Event().wait()
