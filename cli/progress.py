"""Progress for the long commands (models train, replay, features rebuild, simulate, diff): one
line on stderr, rewritten in place, while stderr is a terminal; nothing at all otherwise, so
pipes, CI logs and `--json` output stay exactly what they were.

    with Progress("replay", total=len(records)) as p:
        for r in p.iterate(records): ...
    with Progress("models train") as p:
        p.phase("fitting gbm")
"""
from __future__ import annotations

import sys
import threading
import time


class Progress:
    def __init__(self, label: str, total: int | None = None, stream=None, every: float = 0.1, clock=time.monotonic,
                 tick: float | None = None):
        """`tick`: redraw this often on its own (the elapsed time of a step that cannot count)."""
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every
        self.clock = clock
        self.started = clock()
        self.done = 0
        self.what = ""
        self._shown_at = None
        self._width = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = None
        if self.live and tick:
            self._ticker = threading.Thread(target=self._tick, args=(tick,), daemon=True)
            self._ticker.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._show()

    def phase(self, what: str) -> None:
        """A named step of a command that cannot count its work (training a model)."""
        self.what = what
        self._show(force=True)

    def iterate(self, items):
        """`items`, advancing once per item."""
        for item in items:
            yield item
            self.advance()

    def print(self, text: str, file=None) -> None:
        """A line of the command's own output, printed past the progress line, which comes back."""
        with self._lock:
            self._clear()
        print(text, file=file or sys.stdout, flush=True)
        self._show(force=True)

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            self._show(force=True)

    def line(self) -> str:
        parts = [self.label + ":"]
        if self.what:
            parts.append(self.what)
        if self.total:
            parts.append(f"{self.done}/{self.total} ({100 * self.done // self.total}%)")
        elif self.done:
            parts.append(str(self.done))
        parts.append(f"{self.clock() - self.started:.1f}s")
        return " ".join(parts)

    def _show(self, force: bool = False) -> None:
        if not self.live:
            return
        now = self.clock()
        if not force and self._shown_at is not None and now - self._shown_at < self.every:
            return
        with self._lock:
            self._shown_at = now
            text = self.line()
            self.stream.write("\r" + text.ljust(self._width))
            self.stream.flush()
            self._width = len(text)

    def _clear(self) -> None:
        if self.live and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def close(self) -> None:
        """Remove the line: the command's own output follows on a clean one."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(1)
        with self._lock:
            self._clear()
