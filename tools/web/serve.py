"""Serve a built site on 127.0.0.1 only (a quick look, the tests and the bench).

    python -m tools.web serve --site dist/web --port 8000

The server sends ``Cross-Origin-Opener-Policy``/``Cross-Origin-Embedder-Policy`` so the page is
cross-origin isolated: Chromium then gives ``performance.now()`` 5 µs resolution instead of 100 µs, which the
page's decode timer needs. The page works without them (any static host), with a coarser timer.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from runtime.errors import VaeEdgeError

HOST = "127.0.0.1"


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".json": "application/json",
        ".onnx": "application/octet-stream",
        ".tflite": "application/octet-stream",
    }

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def make_server(site: str | os.PathLike, port: int = 8000) -> http.server.ThreadingHTTPServer:
    """An HTTP server for ``site`` bound to 127.0.0.1 (port 0: any free port; see ``server.server_port``)."""
    site = Path(site)
    if not (site / "index.html").is_file() or not (site / "site.json").is_file():
        raise VaeEdgeError(f"{site} is not a built site (no index.html/site.json); run make web first")
    handler = functools.partial(SiteHandler, directory=str(site))
    try:
        return http.server.ThreadingHTTPServer((HOST, port), handler)
    except OSError as exc:
        raise VaeEdgeError(
            f"cannot listen on {HOST}:{port} ({exc.strerror}); choose another --port"
        ) from None


@contextlib.contextmanager
def serving(site: str | os.PathLike, port: int = 0) -> Iterator[str]:
    """Serve ``site`` in a background thread; yield its base URL."""
    server = make_server(site, port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
