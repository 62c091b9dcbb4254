"""gunicorn settings. No preload: each worker builds its own durable_rules engines after the
fork (the extension's state is per process and not fork-safe).

The values come from config/settings.py (HOST, PORT, WEB_CONCURRENCY, GUNICORN_TIMEOUT,
GUNICORN_MAX_REQUESTS, LOG_LEVEL, PROMETHEUS_MULTIPROC_DIR; docs/api.md, "Settings").
`postsale serve` hands gunicorn this file by its path inside the installed package and stays in
the caller's folder, so relative paths in the settings resolve where the operator meant them."""
import multiprocessing
import os
import shutil
import sys
import tempfile

from config.settings import SettingsError, from_env

try:
    _settings = from_env()
except SettingsError as exc:  # one line, not gunicorn's "Failed to read config file" traceback
    sys.exit(f"postsale: {exc}")

bind = f"{_settings.host}:{_settings.port}"
workers = _settings.web_concurrency if _settings.web_concurrency is not None else multiprocessing.cpu_count() * 2
worker_class = "sync"
preload_app = False
timeout = _settings.gunicorn_timeout
graceful_timeout = 10
# recycle workers now and then: bounds memory a long-lived durable_rules handle may hold
max_requests = _settings.gunicorn_max_requests
max_requests_jitter = 2000
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
# gunicorn's own lines in the service's JSON format (api/logs.py), trace ids included: one
# format for a log shipper. The access line is the app's (postsale.access, with request and
# trace ids); gunicorn's would repeat it, so its access logger stays at WARNING.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "api.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "root": {"level": "WARNING", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": _settings.log_level, "handlers": ["stderr"], "propagate": False, "qualname": "gunicorn.error"},
        "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False, "qualname": "gunicorn.access"},
    },
}

# prometheus_client reads PROMETHEUS_MULTIPROC_DIR itself, in every worker: write it for the library
_metrics_dir = str(_settings.prometheus_multiproc_dir or tempfile.mkdtemp(prefix="postsale-metrics-"))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    shutil.rmtree(_metrics_dir, ignore_errors=True)


# no gunicornc control socket: its default path is shared by every server on the host
control_socket_disable = True


def post_worker_init(worker):
    """What gunicorn itself refuses (414 URI too long, 431 headers too large, a bad request
    line, ...) leaves as problem+json like every other error, not as its HTML page."""
    from gunicorn import util
    util.write_error = _problem
    _settle_collector()


def _settle_collector():
    """The app is loaded by now: what it built (engines, models, libraries) lives as long as
    the worker, so it leaves the garbage collector's generations, and young collections run
    every 10,000 allocations rather than 700. A decision allocates thousands of containers
    that die with the request; at 700 the collector ran several times a request, scanned them
    alive and promoted them, and took a tenth of a worker's CPU (measured in process)."""
    import gc
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _problem(sock, status_int, reason, mesg):
    import json
    from gunicorn import util
    body = json.dumps({"type": "about:blank", "title": reason, "status": status_int,
                       **({"detail": mesg[:500]} if mesg else {})}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)
