"""Graceful stops for the long-running commands (worker, consume, evaluate)."""
from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager


@contextmanager
def stop_on_signals(stop: threading.Event, what: str = "finishing the work in hand", logger: str = "postsale"):
    """SIGTERM and SIGINT set `stop` (the loop finishes what it holds, then returns); the
    previous handlers come back on exit. Outside the main thread (tests) nothing is installed."""
    log = logging.getLogger(logger)

    def _stop(signum, _frame):
        log.info("signal %s: %s", signum, what)
        stop.set()
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, _stop)
        except ValueError:
            pass
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
