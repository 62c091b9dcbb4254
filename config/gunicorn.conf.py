"""gunicorn settings. No preload: each worker builds its own durable_rules engines after the
fork (the extension's state is per process and not fork-safe)."""
import multiprocessing
import os
import shutil
import tempfile

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
worker_class = "sync"
preload_app = False
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 10
# recycle workers now and then: bounds memory a long-lived durable_rules handle may hold
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "20000"))
max_requests_jitter = 2000
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _dir = tempfile.mkdtemp(prefix="postsale-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _dir


def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    shutil.rmtree(os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""), ignore_errors=True)
