"""Debian's Chromium driven by Playwright (no browser download): installing it when it is missing,
launching it with the flags this machine needs, and the app served on a loopback port.

Shared by tests/console/test_browser.py and scripts/console_screenshots.py."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def ensure_chromium() -> str | None:
    """The path of Debian's chromium, installed with apt-get when missing (as root); None when
    it cannot be had, with the reason in the exception chain of the caller's failure."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env, stdout=subprocess.DEVNULL)
    return CHROMIUM if Path(CHROMIUM).exists() else None


class Browser:
    """One Chromium with a fresh profile; `page()` opens a new context (its own cookies)."""

    def __init__(self, executable: str = CHROMIUM):
        from playwright.sync_api import sync_playwright
        self._pw = sync_playwright().start()
        # Playwright gives every launch a fresh, empty --user-data-dir of its own (it refuses one
        # in `args`), so nothing carries over between runs
        self._browser = self._pw.chromium.launch(executable_path=executable, headless=True, args=FLAGS)
        self._contexts = []

    def page(self, base_url: str, javascript: bool = True, width: int = 1280, height: int = 900):
        ctx = self._browser.new_context(base_url=base_url, java_script_enabled=javascript,
                                        viewport={"width": width, "height": height})
        self._contexts.append(ctx)
        return ctx.new_page()

    def close(self) -> None:
        for ctx in self._contexts:
            ctx.close()
        self._browser.close()
        self._pw.stop()


class LiveServer:
    """The WSGI app on 127.0.0.1 and a free port, in a thread (werkzeug's threaded server)."""

    def __init__(self, app):
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_request(self, *args, **kwargs):  # the app's own access log says it already
                pass

        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="console-live", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(5)
