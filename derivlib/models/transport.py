"""The HTTP transport of the LLM client (:mod:`derivlib.models.llm`): httpx2's own, with the two
guards httpx2 lacks.

* A deadline for the whole request. httpx2 times each read, so a server that drips its body one
  byte a second never times out. Here a timer started with the request shuts the request's
  sockets down when ``timeout`` seconds have passed (they are reported by httpcore's ``trace``
  extension as they connect), which wakes a read blocked on them at once; the request then fails
  with :class:`httpx2.ReadTimeout`, which the client counts as a timeout and retries.
* A cap on the response body: a ``Content-Length`` over ``max_bytes`` is refused before the body
  is read, and a body that grows past it is dropped as soon as it does (:class:`BodyTooLarge`).
  Responses are requested uncompressed, so what is counted is what would be stored.

Keep-alive is off: every request has a connection of its own, whose socket the deadline can
close without touching another request's. :meth:`GuardedTransport.abort` ends every request in
flight now (Ctrl-C).
"""
from __future__ import annotations

import socket
import threading
import urllib.parse
import urllib.request
from typing import Callable

import httpx2


class BodyTooLarge(RuntimeError):
    """The response body exceeded the cap; it was dropped unread."""


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (httpx2 gives a custom transport none)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if host in ("localhost", "127.0.0.1", "::1") or urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def _shutdown(sock) -> None:
    try:  # the plain socket's shutdown, also under TLS: it wakes a thread blocked reading it
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _Deadline:
    """A timer that, ``seconds`` after the request started, shuts down the request's sockets."""

    def __init__(self, seconds: float, request: httpx2.Request, done: Callable[["_Deadline"], None]):
        self.seconds, self.request, self.fired = seconds, request, False
        self._sockets: list = []
        self._lock = threading.Lock()
        self._done = done
        self._timer = threading.Timer(seconds, self.fire)
        self._timer.daemon = True  # never keeps a process alive

    def start(self) -> None:
        self._timer.start()

    def watch(self, stream) -> None:
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            fired = self.fired
        if fired:
            _shutdown(sock)

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def cancel(self) -> None:
        self._timer.cancel()
        self._done(self)

    def timeout(self) -> httpx2.ReadTimeout:
        return httpx2.ReadTimeout(f"no complete response within the deadline of {self.seconds:g} s",
                                  request=self.request)


class _GuardedBody(httpx2.SyncByteStream):
    def __init__(self, inner, deadline: _Deadline, max_bytes: int):
        self._inner, self._deadline, self._max = inner, deadline, max_bytes

    def __iter__(self):
        received = 0
        try:
            for chunk in self._inner:
                received += len(chunk)
                if received > self._max:
                    raise BodyTooLarge(f"the response exceeded {self._max} bytes (the cap, --max-response-bytes); "
                                       "it was dropped unread and nothing was cached")
                yield chunk
        except httpx2.TransportError as err:
            if self._deadline.fired:
                raise self._deadline.timeout() from err
            raise

    def close(self) -> None:
        self._deadline.cancel()
        self._inner.close()


class GuardedTransport(httpx2.BaseTransport):
    """httpx2's transport with a deadline of ``timeout`` seconds for the whole request, from
    connecting to the last byte, and a cap of ``max_bytes`` on the response body."""

    def __init__(self, timeout: float, max_bytes: int, proxy: str | None = None):
        self.timeout, self.max_bytes = timeout, max_bytes
        self._inner = httpx2.HTTPTransport(proxy=proxy, limits=httpx2.Limits(max_keepalive_connections=0))
        self._lock = threading.Lock()
        self._active: set[_Deadline] = set()
        self._aborted = False

    def _forget(self, deadline: _Deadline) -> None:
        with self._lock:
            self._active.discard(deadline)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        deadline = _Deadline(self.timeout, request, self._forget)
        with self._lock:
            self._active.add(deadline)
            if self._aborted:
                deadline.fired = True
        outer = request.extensions.get("trace")

        def trace(event: str, info: dict) -> None:
            if event.endswith(("connect_tcp.complete", "start_tls.complete")):
                deadline.watch(info.get("return_value"))
            if outer is not None:
                outer(event, info)

        request.extensions["trace"] = trace
        request.headers["Accept-Encoding"] = "identity"
        deadline.start()
        try:
            response = self._inner.handle_request(request)
        except httpx2.TransportError as err:
            deadline.cancel()
            if deadline.fired:
                raise deadline.timeout() from err
            raise
        except BaseException:
            deadline.cancel()
            raise
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response.close()
            deadline.cancel()
            raise BodyTooLarge(f"the response announced {declared} bytes, over the cap of {self.max_bytes} "
                               "(--max-response-bytes); nothing was read or cached")
        return httpx2.Response(response.status_code, headers=response.headers, extensions=response.extensions,
                               stream=_GuardedBody(response.stream, deadline, self.max_bytes))

    def abort(self) -> None:
        """End every request in flight, and any started later, at once."""
        with self._lock:
            self._aborted = True
            active = list(self._active)
        for deadline in active:
            deadline.fire()

    def close(self) -> None:
        self._inner.close()
