"""The composition root: the one place that turns settings into a running Runtime (stores,
engines, scorers, the inline dispatcher), for the HTTP server, the workers and the commands.

    rt = bootstrap()                     # settings from the environment; serve the newest rules
    rt = bootstrap(settings, start=False)  # a command that only needs the stores
"""
from __future__ import annotations

from config.settings import Settings, from_env

from .runtime import Runtime

_FROM_SETTINGS = object()


def redis_client(settings: Settings):
    """The Redis client of REDIS_URL, or None on the embedded default. Short timeouts: a Redis
    that hangs must not hold a request for long."""
    if not settings.redis_url:
        return None
    import redis as redis_lib
    return redis_lib.Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout_seconds,
                                    socket_connect_timeout=settings.redis_timeout_seconds)


def bootstrap(settings: Settings | None = None, *, redis=_FROM_SETTINGS, start: bool = True,
              watch: bool = False) -> Runtime:
    """`start`: adopt the recorded ruleset versions (recording the flows on disk that have
    none) and load the knowledge documents; `watch`: follow new versions in the background, so
    the decision path never asks the database which version is live."""
    settings = settings or from_env()
    from adapters import telemetry
    telemetry.configure(settings.traces_exporter)
    rt = Runtime(settings, redis_client(settings) if redis is _FROM_SETTINGS else redis)
    if start:
        rt.start()
    if watch:
        rt.watch()
    return rt


__all__ = ["bootstrap", "redis_client", "Runtime"]
