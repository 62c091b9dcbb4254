"""A real HTTP server on a loopback port for the adapter tests: a small WSGI app served by
werkzeug in a thread. Tell it what to do next (`script`), and it records what it saw.

Behaviours, consumed one per request (then "ok" for ever):
    ("ok",)                         act once per Idempotency-Key: 201 and a new id the first
                                    time, 200 + Idempotent-Replayed: true with the same body after
    ("slow", seconds)               sleep, then "ok"
    ("hang",)                       never answer (until the test ends): the client times out
    ("effect_then_hang",)           do the side effect, then never answer: the response is lost
    ("status", code, headers, body) answer exactly that (body: bytes, str or JSON-able)
    ("reset",)                      reset the TCP connection (SO_LINGER 0) without answering
    ("badjson",)                    200 with a body that is not JSON
"""
from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from http import HTTPStatus

from werkzeug.serving import make_server


class FakeTool:
    def __init__(self):
        self.seen: list[dict] = []
        self.script: list[tuple] = []
        self.effects: dict[str, dict] = {}  # idempotency key -> the object created for it
        self.lock = threading.Lock()
        self.release = threading.Event()

    # what the tests read
    @property
    def keys(self) -> list[str | None]:
        return [r["idempotency_key"] for r in self.seen]

    @property
    def side_effects(self) -> int:
        return len(self.effects)

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        with self.lock:
            self.seen.append({
                "method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"],
                "query": environ.get("QUERY_STRING", ""), "idempotency_key": environ.get("HTTP_IDEMPOTENCY_KEY"),
                "authorization": environ.get("HTTP_AUTHORIZATION"), "content_type": environ.get("CONTENT_TYPE"),
                "traceparent": environ.get("HTTP_TRACEPARENT"),
                "body": json.loads(body) if body else None,
            })
            behaviour = self.script.pop(0) if self.script else ("ok",)
        kind = behaviour[0]
        if kind == "slow":
            time.sleep(behaviour[1])
            kind = "ok"
        if kind == "hang":
            self.release.wait(10)
            return self._send(start_response, 503, {}, {"message": "released"})
        if kind == "reset":
            sock = environ["werkzeug.socket"]
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            os.close(sock.detach())  # the fd itself: werkzeug's buffered files must not answer afterwards
            return []
        if kind == "badjson":
            return self._send(start_response, 200, {"Content-Type": "application/json"}, b"{not json")
        if kind == "status":
            _, code, headers, payload = behaviour
            return self._send(start_response, code, headers or {}, payload)
        key = environ.get("HTTP_IDEMPOTENCY_KEY") or ""
        with self.lock:
            replay = key in self.effects
            if not replay:
                self.effects[key] = {"id": f"ext-{len(self.effects) + 1}", "status": "open"}
            obj = self.effects[key]
        if kind == "effect_then_hang":
            self.release.wait(10)
        return self._send(start_response, 200 if replay else 201,
                          {"Idempotent-Replayed": "true"} if replay else {}, obj)

    @staticmethod
    def _send(start_response, code, headers, payload):
        if isinstance(payload, (dict, list)) or payload is None:
            data = json.dumps(payload).encode() if payload is not None else b""
            headers = {"Content-Type": "application/json", **headers}
        else:
            data = payload.encode() if isinstance(payload, str) else payload
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Unknown"
        start_response(f"{code} {phrase}", [*headers.items(), ("Content-Length", str(len(data)))])
        return [data]


class Server:
    def __init__(self):
        self.app = FakeTool()
        self.httpd = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.httpd.handle_error = lambda request, address: None  # a reset connection is on purpose
        self.httpd.log = lambda *a, **k: None
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.app.release.set()
        self.httpd.shutdown()
        self.thread.join(5)


def closed_port() -> int:
    """A loopback port nobody listens on (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
