"""The viewer's HTTP server: the page, its assets, level info and tiles rendered on demand.

Standard library only (``http.server.ThreadingHTTPServer``): a request thread parses and
validates the URL, then waits on a render job; renders run on a small fixed pool of worker
threads (never on the request threads, never more than ``workers`` at a time). See
docs/viewer.md for why no web framework is used.

Work that nobody waits for is not done:

* pending jobs are taken newest first, so after a fast zoom the tiles of the current view are
  rendered before those of views the user passed through;
* a request thread watches its connection while it waits; when the browser drops the request
  (the page aborts tiles that left the view, see viewer.js) the job is withdrawn, and a job
  nobody waits for any more is skipped;
* two requests for the same tile share one job; finished tiles are kept in a byte-budgeted LRU.

Nothing is ever read from disk on a request: the assets are loaded into memory at start, and a
request path is only looked up in a fixed table or parsed as numbers.
"""

from __future__ import annotations

import json
import re
import secrets
import select
import socket
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

from ..representation import Representation
from .tiles import DEFAULT_TILE_SIZE, Level, TileRequestError, build_levels, encode_png
from .tiles import render_tile as _render_tile

__all__ = ["View", "TileCache", "RenderPool", "ViewerApp", "make_server"]

# Served files: URL path -> (file in static/, content type). Nothing else is ever served.
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/viewer.js": ("viewer.js", "text/javascript; charset=utf-8"),
    "/static/viewer.css": ("viewer.css", "text/css; charset=utf-8"),
    "/static/openseadragon.min.js": ("openseadragon.min.js", "text/javascript; charset=utf-8"),
    "/static/LICENSE-openseadragon.txt": ("LICENSE-openseadragon.txt", "text/plain"),
}
MAX_URL_LENGTH = 1024
_NUMBER = re.compile(r"[0-9]{1,9}")
_TILE_NAME = re.compile(r"([0-9]{1,9})_([0-9]{1,9})\.png")
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'",
}


@dataclass
class View:
    """One panel of the page: a name, the representation its tiles are rendered from, and the
    (h, w) of the image it encodes."""

    name: str
    rep: Representation
    input_size: tuple[int, int]


class TileCache:
    """Thread-safe LRU of encoded tiles, bounded by the total bytes it holds."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.peak_bytes = 0

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: tuple, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= len(old)
            self._items[key] = data
            self.nbytes += len(data)
            while self.nbytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self.nbytes -= len(dropped)
            self.peak_bytes = max(self.peak_bytes, self.nbytes)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(eq=False)
class Job:
    key: tuple
    fn: Callable[[], bytes]
    waiters: int = 1
    state: str = "pending"  # pending -> running -> done | failed | withdrawn
    result: bytes | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


class RenderPool:
    """``workers`` threads rendering jobs newest first; duplicate keys share a job, and a
    pending job whose every waiter has left is withdrawn without running."""

    def __init__(self, workers: int = 2):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._cond = threading.Condition()
        self._pending: list[Job] = []
        self._jobs: dict[tuple, Job] = {}
        self._closed = False
        self.running = 0
        self.peak_running = 0
        self.completed = 0
        self.withdrawn = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"gblsr-view-render-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def submit(self, key: tuple, fn: Callable[[], bytes]) -> Job:
        with self._cond:
            job = self._jobs.get(key)
            if job is not None:
                job.waiters += 1
                return job
            job = Job(key, fn)
            if self._closed:
                job.state = "withdrawn"
                job.done.set()
                return job
            self._jobs[key] = job
            self._pending.append(job)
            self._cond.notify()
            return job

    def release(self, job: Job) -> None:
        """A waiter gave up (its client left); withdraw the job if it has not started and
        nobody else waits for it."""
        with self._cond:
            job.waiters -= 1
            if job.waiters <= 0 and job.state == "pending":
                job.state = "withdrawn"
                self._pending.remove(job)
                self._jobs.pop(job.key, None)
                self.withdrawn += 1
                job.done.set()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._pending.pop()  # newest first
                job.state = "running"
                self.running += 1
                self.peak_running = max(self.peak_running, self.running)
            try:
                job.result = job.fn()
                state, error = "done", None
            except Exception as e:  # reported to the client as one line, never a traceback
                first = str(e).splitlines()[0] if str(e) else ""
                state, error = "failed", f"{type(e).__name__}: {first}"
            with self._cond:
                self.running -= 1
                self.completed += 1
                job.state, job.error = state, error
                self._jobs.pop(job.key, None)
                job.done.set()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for job in self._pending:
                job.state = "withdrawn"
                job.done.set()
            self._pending.clear()
            self._jobs.clear()
            self._cond.notify_all()


def _load_assets() -> dict[str, tuple[bytes, str]]:
    root = resources.files("gblsr.viewer") / "static"
    return {path: ((root / name).read_bytes(), ctype) for path, (name, ctype) in ASSETS.items()}


class ViewerApp:
    """Everything the server serves, independent of the HTTP plumbing.

    views: the panels, all encodings of the same input (same ``input_size``).
    """

    def __init__(
        self,
        views: list[View],
        max_scale: float = 16.0,
        tile_size: int = DEFAULT_TILE_SIZE,
        cache_bytes: int = 256 << 20,
        workers: int = 2,
        title: str = "gblsr-view",
    ):
        if not views:
            raise ValueError("the viewer needs at least one view")
        sizes = {tuple(int(n) for n in v.input_size) for v in views}
        if len(sizes) != 1:
            raise ValueError(f"all views must encode the same image, got sizes {sorted(sizes)}")
        self.views = views
        self.input_size = sizes.pop()
        self.tile_size = int(tile_size)
        self.max_scale = float(max_scale)
        self.levels: list[Level] = build_levels(self.input_size, self.max_scale, self.tile_size)
        self.cache = TileCache(cache_bytes)
        self.pool = RenderPool(workers)
        self.session = secrets.token_hex(4)  # tiles of an earlier run are never mistaken
        self.title = title
        self.assets = _load_assets()
        self.served: dict[int, int] = {}  # level index -> tiles sent (for tests and stats)
        self._served_lock = threading.Lock()

    def info(self) -> dict:
        h, w = self.input_size
        return {
            "title": self.title,
            "session": self.session,
            "input": {"height": h, "width": w},
            "max_scale": self.max_scale,
            "tile_size": self.tile_size,
            "levels": [lv.as_dict(self.tile_size) for lv in self.levels],
            "views": [{"id": i, "name": v.name} for i, v in enumerate(self.views)],
        }

    def parse_tile(self, parts: list[str]) -> tuple[int, int, int, int]:
        """['tile', session, view, level, 'col_row.png'] -> (view, level, col, row).

        Raises ValueError (-> 400) for malformed numbers, TileRequestError (-> 404) for a tile
        that does not exist."""
        if len(parts) != 5:
            raise TileRequestError("no such tile")
        _, session, view, level, name = parts
        m = _TILE_NAME.fullmatch(name)
        if not (_NUMBER.fullmatch(view) and _NUMBER.fullmatch(level) and m):
            raise ValueError("tile paths look like /tile/SESSION/VIEW/LEVEL/COL_ROW.png")
        if session != self.session:
            raise TileRequestError("tile of another viewer session; reload the page")
        v, lv, col, row = int(view), int(level), int(m.group(1)), int(m.group(2))
        if v >= len(self.views):
            raise TileRequestError(f"unknown view {v}")
        if lv >= len(self.levels):
            raise TileRequestError(f"unknown level {lv}")
        cols, rows = self.levels[lv].grid(self.tile_size)
        if col >= cols or row >= rows:
            raise TileRequestError(f"tile ({col}, {row}) is outside level {lv}")
        return v, lv, col, row

    def render_png(self, key: tuple[int, int, int, int]) -> bytes:
        v, lv, col, row = key
        data = encode_png(
            _render_tile(self.views[v].rep, self.levels[lv], col, row, self.tile_size)
        )
        self.cache.put(key, data)
        return data

    def count_served(self, level: int) -> None:
        with self._served_lock:
            self.served[level] = self.served.get(level, 0) + 1

    def close(self) -> None:
        self.pool.close()


def _client_gone(sock: socket.socket) -> bool:
    """True when the peer closed the connection (readable with nothing to read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gblsr-view"
    sys_version = ""
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"
    app: ViewerApp  # set on the subclass made by make_server
    verbose = False
    wait_timeout = 120.0

    # Every method other than GET and HEAD: 405, never the base class's 501.
    def __getattr__(self, name: str):
        if name.startswith("do_"):
            return self._method_not_allowed
        raise AttributeError(name)

    def _method_not_allowed(self) -> None:
        self.close_connection = True  # any body it sent is left unread
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and HEAD are served")

    def send_error(self, code, message=None, explain=None):
        # Malformed request lines and unsupported HTTP versions are the client's fault.
        if code in (HTTPStatus.NOT_IMPLEMENTED, HTTPStatus.HTTP_VERSION_NOT_SUPPORTED):
            code = HTTPStatus.BAD_REQUEST
        super().send_error(code, message, None)

    def end_headers(self) -> None:
        for k, v in _SECURITY_HEADERS.items():
            self.send_header(k, v)
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        if self.verbose:
            sys.stderr.write(f"gblsr-view: {self.address_string()} {format % args}\n")

    def _send(self, code: int, ctype: str, body: bytes, cache: str = "no-store") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if len(self.path) > MAX_URL_LENGTH:
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, "URL too long")
            return
        if self.headers.get("Content-Length", "0").strip() not in ("", "0") or self.headers.get(
            "Transfer-Encoding"
        ):
            self.close_connection = True
            self.send_error(413, "requests have no body here")
            return
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        asset = self.app.assets.get(path)
        if asset is not None:
            self._send(HTTPStatus.OK, asset[1], asset[0], cache="no-cache")
        elif path == "/info.json":
            body = json.dumps(self.app.info()).encode()
            self._send(HTTPStatus.OK, "application/json", body)
        elif path.startswith("/tile/"):
            self._tile(path[1:].split("/"))
        else:
            self.send_error(HTTPStatus.NOT_FOUND, "not found")

    def _tile(self, parts: list[str]) -> None:
        app = self.app
        try:
            key = app.parse_tile(parts)
        except TileRequestError as e:
            self.send_error(HTTPStatus.NOT_FOUND, str(e))
            return
        except ValueError as e:
            self.send_error(HTTPStatus.BAD_REQUEST, str(e))
            return
        data = app.cache.get(key)
        if data is None:
            job = app.pool.submit(key, lambda: app.render_png(key))
            data = self._wait(job)
            if data is None:
                return
        app.count_served(key[1])
        self._send(HTTPStatus.OK, "image/png", data, cache="private, max-age=86400, immutable")

    def _wait(self, job: Job) -> bytes | None:
        waited = 0.0
        while not job.done.wait(0.05):
            waited += 0.05
            if _client_gone(self.connection) or waited > self.wait_timeout:
                self.app.pool.release(job)
                self.close_connection = True
                return None
        if job.state == "done":
            return job.result
        if job.state == "withdrawn":
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "the viewer is shutting down")
        else:
            sys.stderr.write(f"gblsr-view: tile {job.key} failed: {job.error}\n")
            self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR, f"render failed: {job.error}")
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    max_connections = 64

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._active = 0
        self._active_lock = threading.Lock()

    def process_request(self, request, client_address):
        # A fixed ceiling on request threads: beyond it a connection is refused at once.
        with self._active_lock:
            full = self._active >= self.max_connections
            if not full:
                self._active += 1
        if full:
            try:
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Retry-After: 1\r\nConnection: close\r\n\r\n"
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request, client_address):
        # A browser that aborts a tile mid-response is routine; anything else is one line.
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            sys.stderr.write(f"gblsr-view: request failed: {type(exc).__name__}: {exc}\n")

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._active -= 1


def make_server(
    app: ViewerApp, host: str = "127.0.0.1", port: int = 0, verbose: bool = False
) -> ThreadingHTTPServer:
    """An HTTP server for ``app`` bound to host:port (port 0: a free one). Call
    ``serve_forever()`` on it; ``server.server_address`` has the port."""
    handler = type("ViewerHandler", (_Handler,), {"app": app, "verbose": verbose})
    return _Server((host, int(port)), handler)
