"""A counting HTTP reverse proxy, shared by the tests (``tests/conftest.py``) and the
benchmarks (``bench/s3.py``).

Bytes are counted at the HTTP level by a proxy rather than with botocore event hooks: the
engine makes its own s3fs instances (and may run in other threads or processes), and a proxy
sees every request whichever client sends it. :attr:`CountingProxy.sent` and
:attr:`~CountingProxy.received` count request and response *bodies*, so an ``UploadPartCopy``
counts as zero bytes sent; :attr:`CountingProxy.sent_headers` adds the request lines and
headers, for figures where the requests themselves are most of what is sent.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Exchange:
    """One request that went through the proxy."""

    method: str
    path: str
    status: int
    sent: int
    received: int
    headers: int = 0    # request line and header bytes


class CountingProxy:
    """A threaded HTTP reverse proxy on 127.0.0.1 (ephemeral port) that forwards every
    request to ``upstream`` and counts request body bytes (:attr:`sent`) and response body
    bytes (:attr:`received`)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="counting-proxy")

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def sent(self) -> int:
        """Request body bytes sent to the store since the last :meth:`reset`."""
        with self._lock:
            return sum(e.sent for e in self.exchanges)

    @property
    def sent_headers(self) -> int:
        """Request lines, headers and bodies sent since the last :meth:`reset`."""
        with self._lock:
            return sum(e.sent + e.headers for e in self.exchanges)

    @property
    def received(self) -> int:
        """Response body bytes received from the store since the last :meth:`reset`."""
        with self._lock:
            return sum(e.received for e in self.exchanges)

    def requests(self, method: str | None = None) -> list[Exchange]:
        """The exchanges so far (of one HTTP method, if given)."""
        with self._lock:
            return [e for e in self.exchanges if method in (None, e.method)]

    def reset(self) -> None:
        with self._lock:
            self.exchanges.clear()

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def start(self) -> CountingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
               "trailer", "trailers", "transfer-encoding", "upgrade", "expect", "content-length"}


def _handler(proxy: CountingProxy) -> type[BaseHTTPRequestHandler]:
    local = threading.local()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if not size:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _forward(self) -> None:
            body = self._body()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            for attempt in (0, 1):
                conn = getattr(local, "conn", None)
                if conn is None:
                    conn = local.conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    break
                except (http.client.HTTPException, ConnectionError):
                    conn.close()
                    local.conn = None
                    if attempt:
                        raise
            head = len(self.raw_requestline) + 2 + sum(
                len(k) + len(v) + 4 for k, v in self.headers.items())
            proxy.record(Exchange(self.command, self.path, resp.status, len(body), len(data),
                                  head))
            self.send_response_only(resp.status, resp.reason)
            for key, value in resp.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            length = resp.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Handler
