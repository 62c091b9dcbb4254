"""Console sign-in: an API key exchanged for a signed session cookie, CSRF tokens on every form,
and the scope each page needs.

The cookie holds the key's SHA-256 (never the key), looked up in the key ring on every request,
so a key removed from the ring signs its sessions out. It is HttpOnly, SameSite=Lax and Secure
(browsers keep Secure cookies on http://localhost and 127.0.0.1 too).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from functools import wraps

from flask import current_app, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from ..auth import digest
from ..errors import Problem

SESSION_HOURS = 8


def configure(app, settings, keys) -> None:
    secret = settings.console_secret or hmac.new(
        b"postsale-console", "".join(sorted(h for h, _ in keys.entries)).encode(), hashlib.sha256).hexdigest()
    app.secret_key = secret
    app.session_interface = ConsoleSessions()
    app.config.update(SESSION_COOKIE_NAME="postsale_console", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SECURE=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_PATH="/console",
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS))


class ConsoleSessions(SecureCookieSessionInterface):
    """The signed cookie session, opened only under the console's path (the only one the
    browser sends it to): an API request builds no signer and reads no cookie."""

    def open_session(self, app, request):
        if not request.path.startswith(app.config["SESSION_COOKIE_PATH"]):
            return self.make_null_session(app)
        return super().open_session(app, request)


class Refused(Exception):
    """A console request refused with a page (status, title, message), never a 500."""

    def __init__(self, status: int, title: str, message: str):
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Refused(400, "Form refused", "the form did not carry this session's token (CSRF); "
                      "reload the page and send it again")


def sign_in(key: str) -> bool:
    who = current_app.extensions["postsale.keys"].identify(key)
    if who is None:
        return False
    session.clear()
    session.permanent = True
    session["key"] = digest(key)
    session["csrf"] = secrets.token_urlsafe(32)
    return True


def sign_out() -> None:
    session.clear()


def current() -> tuple[str, frozenset] | None:
    """The signed-in key's (id, scopes), or None."""
    d = session.get("key")
    return current_app.extensions["postsale.keys"].by_digest(d) if isinstance(d, str) else None


def page(scope: str | None):
    """A console view for signed-in keys holding `scope`; POSTs also need the CSRF token. The
    key's rate limit for the scope applies as on the API."""
    def deco(fn):
        @wraps(fn)
        def wrapper(*args, **kwargs):
            who = current()
            if who is None:
                if request.method != "GET":
                    raise Refused(401, "Signed out", "sign in again; nothing was changed")
                return redirect(url_for("console.signin", next=request.full_path.rstrip("?")))
            g.api_key_id, g.scopes = who
            if request.method == "POST":
                check_csrf()
            if scope is not None and scope not in g.scopes:
                raise Refused(403, "Not allowed", f"this key lacks the '{scope}' scope")
            limits = current_app.extensions.get("postsale.limits")
            if limits is not None and scope is not None:
                try:
                    limits.check(g.api_key_id, scope)
                except Problem as exc:
                    raise Refused(429, "Too many requests", exc.detail) from None
            return fn(*args, **kwargs)
        return wrapper
    return deco
