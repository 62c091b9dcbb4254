"""The HTTP/JSON adapter: one tool, one httpx.Client, one request per call, no retries.

Request mapping (from the catalog entry of the action):

    {method} {base_url}{path}        path placeholders: {ref} = the object a compensation undoes,
                                     {name} = params[name], URL-quoted
    Authorization: Bearer <secret>   the tool's credential (env var or file), read per call
    Idempotency-Key: <key>           the outbox row's key; the same on every retry of the action
    Content-Type: application/json   POST / PUT / PATCH: the body is the action's params as JSON
                                     GET / DELETE: params not used in the path go in the query
    Accept: application/json

Response mapping:

    2xx + JSON object (or empty)  -> ToolResult(reference=body[reference_field], data=body)
                                     `Idempotent-Replayed: true` -> replayed=True
    2xx + anything else           -> ToolBadResponse (retryable: the key makes the retry safe)
    3xx                           -> ToolRejected (redirects are not followed: a moved API is config)
    408                           -> ToolTimeout
    409, 425                      -> ToolUnavailable (a request with this key is still in flight)
    429                           -> ToolRateLimited(retry_after from Retry-After)
    other 4xx                     -> ToolRejected(status, reason from the body's message/error/detail)
    5xx                           -> ToolUnavailable(status, retry_after from Retry-After if sent)
    connect / read / write / pool timeout -> ToolTimeout(phase)
    connection refused, reset, closed without an answer, TLS failure -> ToolUnavailable(status=None)

Retries belong to the dispatcher (`adapter.retry` is the catalog's policy).
"""
from __future__ import annotations

import re
from urllib.parse import quote

import httpx

from adapters import telemetry

from .base import (Adapter, ToolBadResponse, ToolMisconfigured, ToolRateLimited, ToolRejected, ToolResult,
                   ToolTimeout, ToolUnavailable, parse_retry_after)

USER_AGENT = "postsale-adapter/0.1"
PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
BODY_METHODS = {"POST", "PUT", "PATCH"}
_PHASES = ((httpx.ConnectTimeout, "connect"), (httpx.ReadTimeout, "read"), (httpx.WriteTimeout, "write"),
           (httpx.PoolTimeout, "pool"))


def _reason(response: httpx.Response) -> str:
    """The tool's own explanation, short: a JSON body's message/error/detail, else the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for k in ("message", "error", "detail", "title", "reason"):
            v = body.get(k)
            if isinstance(v, str) and v:
                return v[:500]
            if isinstance(v, dict) and isinstance(v.get("message"), str):
                return v["message"][:500]
    text = response.text.strip() if "html" not in response.headers.get("Content-Type", "") else ""
    return (text or response.reason_phrase or "")[:500]


class HttpAdapter(Adapter):
    kind = "http"

    def __init__(self, spec, audit=None, environ=None, transport: httpx.BaseTransport | None = None):
        super().__init__(spec, audit)
        if not spec.base_url:
            raise ValueError(f"tool {spec.name}: the http adapter needs base_url")
        self.environ = environ
        self.client = httpx.Client(timeout=httpx.Timeout(spec.timeout_seconds), follow_redirects=False,
                                   transport=transport, headers={"User-Agent": USER_AGENT,
                                                                 "Accept": "application/json"})

    def close(self) -> None:
        self.client.close()

    # -- mapping
    def request_for(self, spec_action, params: dict, key: str, reference: str | None) -> httpx.Request:
        """The request one call sends, before the Authorization header is added."""
        values = {**params, "ref": reference}
        used = set()

        def sub(m):
            name = m.group(1)
            v = values.get(name)
            if v is None or v == "":
                raise ToolRejected(f"{self.tool}.{spec_action.name}: path {spec_action.path} needs "
                                   f"{'the reference of the object to undo' if name == 'ref' else 'params.' + name}",
                                   status=None, reason=f"missing {name}")
            used.add(name)
            return quote(str(v), safe="")

        path = PLACEHOLDER.sub(sub, spec_action.path or f"/{spec_action.name}")
        url = f"{self.spec.base_url}{path}"
        headers = {"Idempotency-Key": key}
        method = spec_action.method
        if method in BODY_METHODS:
            return self.client.build_request(method, url, json=params, headers=headers)
        query = {k: v if isinstance(v, (str, int, float)) else str(v) for k, v in params.items()
                 if k not in used and v is not None}
        return self.client.build_request(method, url, params=query, headers=headers)

    def _credential(self) -> str | None:
        cred = self.spec.credential
        if cred is None:
            return None
        secret = cred.resolve(self.environ)
        if not secret:
            raise ToolMisconfigured(f"{self.tool}: the credential ({cred.describe()}) is not set or not readable",
                                    tool=self.tool)
        return secret

    # -- one call
    def _call(self, spec_action, params, key, reference) -> ToolResult:
        action = spec_action.name
        request = self.request_for(spec_action, params, key, reference)
        request.headers.update(telemetry.carrier())  # traceparent: the tool's own trace continues ours
        secret = self._credential()
        if secret is not None:
            request.headers["Authorization"] = f"Bearer {secret}"
        ctx = {"tool": self.tool, "action": action}
        try:
            response = self.client.send(request)
        except httpx.TimeoutException as exc:
            phase = next((p for cls, p in _PHASES if isinstance(exc, cls)), "read")
            raise ToolTimeout(f"{self.tool}.{action}: no answer within {self.spec.timeout_seconds:g}s ({phase})",
                              phase=phase, **ctx) from None
        except httpx.ConnectError as exc:
            raise ToolUnavailable(f"{self.tool}.{action}: cannot connect ({_cause(exc)})", **ctx) from None
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.CloseError) as exc:
            raise ToolUnavailable(f"{self.tool}.{action}: connection failed mid-request ({_cause(exc)})",
                                  **ctx) from None
        except httpx.HTTPError as exc:  # ProxyError, UnsupportedProtocol, DecodingError, ...
            raise ToolUnavailable(f"{self.tool}.{action}: {type(exc).__name__} ({_cause(exc)})", **ctx) from None
        return self._result(response, spec_action, key, ctx)

    def _result(self, response: httpx.Response, spec_action, key, ctx) -> ToolResult:
        status = response.status_code
        where = f"{self.tool}.{spec_action.name}: HTTP {status}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if 200 <= status < 300:
            data = {}
            if response.content.strip():
                try:
                    data = response.json()
                except ValueError:
                    raise ToolBadResponse(f"{where} with a body that is not JSON", status=status, **ctx) from None
                if not isinstance(data, dict):
                    raise ToolBadResponse(f"{where} with JSON that is not an object", status=status, **ctx)
            ref = data.get(spec_action.reference_field)
            replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
            return ToolResult(tool=self.tool, action=spec_action.name, idempotency_key=key,
                              reference=None if ref is None else str(ref), data=data, replayed=replayed,
                              status=status)
        if status == 429:
            raise ToolRateLimited(f"{where}: rate limited" + (f", retry after {retry_after:g}s"
                                                              if retry_after is not None else ""),
                                  retry_after=retry_after, **ctx)
        if status == 408:
            raise ToolTimeout(f"{where}: the tool timed out reading the request", phase="read", **ctx)
        if status in (409, 425):
            raise ToolUnavailable(f"{where}: a request with this key is still being processed", status=status,
                                  retry_after=retry_after, **ctx)
        if status >= 500:
            raise ToolUnavailable(f"{where}", status=status, retry_after=retry_after, **ctx)
        if 300 <= status < 400:
            raise ToolRejected(f"{where}: unexpected redirect (check base_url)", status=status,
                               reason=response.headers.get("Location", ""), **ctx)
        reason = _reason(response)
        raise ToolRejected(f"{where}: {reason}" if reason else where, status=status, reason=reason, **ctx)


def _cause(exc: Exception) -> str:
    inner = exc.__context__ or exc.__cause__
    text = str(exc) or (str(inner) if inner else "") or type(exc).__name__
    return text[:200]


__all__ = ["HttpAdapter"]
