"""Headless Chromium for the tests and the bench: Debian's ``chromium`` driven by Playwright (PyPI).

Playwright's own browser download is not used (nor reachable here): ``executable_path`` points at the system
Chromium, from ``$VAE_EDGE_CHROMIUM`` or ``chromium`` on PATH.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import VaeEdgeError

# A page is ready once it has drawn its first digit, or shown an error (also when its scripts never ran).
READY_JS = (
    "(window.vaeEdge && vaeEdge.state().firstDecodeMs !== null) || !document.getElementById('error').hidden"
)


def chromium_path(executable: str | None = None) -> str:
    path = (
        executable or os.environ.get("VAE_EDGE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    )
    if not Path(path).is_file():
        raise VaeEdgeError(
            f"Chromium not found at {path}; apt-get install --no-install-recommends chromium "
            "(or set VAE_EDGE_CHROMIUM)"
        )
    return path


def launch_chromium(playwright, executable: str | None = None):
    """A headless Chromium browser from a running ``sync_playwright()``."""
    return playwright.chromium.launch(executable_path=chromium_path(executable), headless=True)


@dataclass(frozen=True)
class SitePage:
    page: object  # playwright Page
    errors: list[str]  # console errors and uncaught page errors, for as long as the page lives
    requests: list[str]  # every URL the page requested


def open_site_page(browser, url: str, *, timeout_ms: int = 30000, **context_options) -> SitePage:
    """A fresh context (own cache) and page at ``url``, waited until ready."""
    context = browser.new_context(**context_options)
    page = context.new_page()
    opened = SitePage(page, [], [])
    page.on("console", lambda msg: opened.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: opened.errors.append(str(exc)))
    page.on("request", lambda request: opened.requests.append(request.url))
    page.goto(url)
    page.wait_for_function(READY_JS, timeout=timeout_ms)
    return opened
