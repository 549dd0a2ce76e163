"""A fault-injecting HTTP proxy on loopback, put in front of the GCS
emulator so that builds meet flaky object storage for real: for a share of
requests it answers 503, resets the connection, or answers late; or it
forwards the request, lets the emulator act, and then loses the answer
(drops the connection, or resets it), so the client retries something that
already happened; it can refuse every request for one object (403), as a
bucket does to an object its caller may not read; and it can stop
answering altogether (every connection reset, nothing forwarded), as
storage that never comes back. A hook can also make another client act on
the storage just before a request goes on, to land a race at its instant.

Faults are drawn from a seeded generator, one draw per request; the share,
the refused object and whether storage is down can be changed while it
runs. Each request is counted by its kind (`kind_of`), and so is each fault.
"""

from __future__ import annotations

import http.client
import http.server
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from typing import Callable, Dict, Optional, Sequence
from urllib.parse import urlsplit

FAULTS = ("503", "reset", "slow")
# Forwarded to the emulator, which acts on them; then the answer is lost.
LOST_ANSWERS = ("answer_dropped", "answer_reset")
# Hop-by-hop headers are the proxy's own business; bodies are relayed whole,
# so their length is set afresh.
_NOT_RELAYED = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that gave up on a slow answer is part of the test."""


class FaultProxy:
    """`with FaultProxy(upstream, fault_share=0.1) as proxy:` then point
    clients at `proxy.url`. `seen` counts requests, `kinds` them by kind,
    `injected` faults by fault, `lost` lost answers by request kind."""

    def __init__(
        self,
        upstream: str,
        fault_share: float,
        seed: int = 0,
        faults: Sequence[str] = FAULTS,
        slow_s: float = 1.5,
        lost_every: int = 0,
    ):
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname, parts.port)
        self.fault_share = fault_share
        self.refused = ""  # a path fragment, e.g. "inputs%2Fbg%2Fbg2.jpg"
        self.down = False
        self.down_at = ""  # stop answering for good at the first request of this kind
        # Called with (kind, path) before a request is forwarded: another
        # client's action, made to land at that very moment.
        self.before_forward: Optional[Callable[[str, str], None]] = None
        self.went_down = 0.0  # time.monotonic() when it went down
        self._lost_every = lost_every
        self._faults = tuple(faults)
        self._slow_s = slow_s
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.seen = 0
        self.injected: Dict[str, int] = {fault: 0 for fault in self._faults}
        self.kinds: Counter = Counter()  # requests by kind
        self.lost: Counter = Counter()  # lost answers by request kind
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def draw(self, kind: str) -> str:
        """The fault for the next request, of `kind`, or '' for none;
        "down" once storage is down. With `lost_every` n, the answers of the
        first request of each kind and of every n-th after it are lost
        (dropped and reset in turn), so every kind the client sends meets a
        lost answer however few of it there are."""
        with self._lock:
            self.seen += 1
            self.kinds[kind] += 1
            if self.down_at and kind == self.down_at and not self.down:
                self.down, self.went_down = True, time.monotonic()
            if self.down:
                return "down"
            if self._lost_every and self.kinds[kind] % self._lost_every == 1 % self._lost_every:
                fault = LOST_ANSWERS[sum(self.lost.values()) % len(LOST_ANSWERS)]
                self.lost[kind] += 1
                return fault
            if self._random.random() >= self.fault_share:
                return ""
            fault = self._random.choice(self._faults)
            self.injected[fault] += 1
            if fault in LOST_ANSWERS:
                self.lost[kind] += 1
            return fault

    def forward(self, method: str, path: str, headers, body: bytes):
        """The upstream's answer to one request: status, headers, body."""
        connection = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            # The Host header stays the proxy's: the emulator builds the links
            # it hands out (resumable upload sessions, mediaLink) from it, and
            # those requests must come back through the proxy too.
            connection.request(method, path, body=body, headers=dict(headers))
            response = connection.getresponse()
            return response.status, response.reason, response.getheaders(), response.read()
        finally:
            connection.close()

    def _handler_class(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.refused and proxy.refused in self.path:
                    self._answer(403, "Forbidden", [], _error_body(403))
                    return
                kind = kind_of(self.command, self.path, body)
                fault = proxy.draw(kind)
                if fault in ("reset", "down"):
                    self._reset()
                    return
                if fault == "503":
                    self._answer(503, "Service Unavailable", [], _error_body(503))
                    return
                if proxy.before_forward is not None:
                    proxy.before_forward(kind, self.path)
                try:
                    status, reason, headers, answer = proxy.forward(
                        self.command, self.path, self.headers.items(), body
                    )
                except OSError:  # the emulator is down: a front end answers 502
                    self._answer(502, "Bad Gateway", [], _error_body(502))
                    return
                if fault == "slow":
                    time.sleep(proxy._slow_s)
                if fault == "answer_reset":
                    self._reset()
                    return
                if fault == "answer_dropped":  # closed without a word
                    self.close_connection = True
                    return
                self._answer(status, reason, headers, answer)

            def _answer(self, status: int, reason: str, headers, body: bytes) -> None:
                self.send_response(status, reason)
                for name, value in headers:
                    if name.lower() not in _NOT_RELAYED:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _reset(self) -> None:
                """Drop the connection with a TCP reset, answering nothing."""
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _relay

            def log_message(self, *args) -> None:
                """Quiet: the test reads the counters instead."""

        return Handler


def kind_of(method: str, path: str, body: bytes) -> str:
    """What a GCS JSON API request does: write, compose, copy, delete, list,
    read, or batch (several deletes or copies in one request, named by
    what they hold: "batch:delete", "batch:copy")."""
    route = urlsplit(path).path
    if route.startswith("/batch/"):
        inner = body.decode("latin-1")
        return "batch:" + ("copy" if "/copyTo/" in inner or "/rewriteTo/" in inner else "delete")
    if route.endswith("/compose"):
        return "compose"
    if "/copyTo/" in route or "/rewriteTo/" in route:
        return "copy"
    if method == "DELETE":
        return "delete"
    if method in ("POST", "PUT", "PATCH"):
        return "write"
    if route.rstrip("/").endswith("/o"):
        return "list"
    return "read"


def _error_body(status: int) -> bytes:
    """An error document shaped as GCS's JSON API writes them."""
    message = {
        403: "Caller does not have storage.objects.get access",
        502: "Bad gateway",
        503: "Service temporarily unavailable",
    }[status]
    return json.dumps({"error": {"code": status, "message": message, "errors": []}}).encode()
