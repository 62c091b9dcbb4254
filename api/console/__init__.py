"""The web console at /console/: approvers, rule authors and operators on the same API keys and
scopes, server-rendered (Jinja, a little JS for the SLA countdown; everything readable without
it). Every view calls the use cases the JSON API calls (service/, the stores); none is repeated.
"""
from __future__ import annotations

from flask import Blueprint, redirect, url_for

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")


def init_app(app, settings) -> None:
    from . import session, views  # noqa: F401 - the views register on bp
    session.configure(app, settings, app.extensions["postsale.keys"])
    app.register_blueprint(bp)
    app.add_url_rule("/", "root", lambda: redirect(url_for("console.home")))
