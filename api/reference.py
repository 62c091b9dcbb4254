"""GET /docs: the browsable API reference — Swagger UI from the swagger_ui_bundle package,
served from this server (no CDN, works offline) over /openapi.json."""
from __future__ import annotations

from flask import Blueprint, Response
from swagger_ui_bundle import swagger_ui_path

bp = Blueprint("reference", __name__, static_folder=swagger_ui_path, static_url_path="/docs/assets")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>postsale API reference</title><link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><noscript><p>The reference needs JavaScript; the document itself is <a href="/openapi.json">/openapi.json</a>.</p></noscript>
<main id="reference" aria-label="API reference"></main>
<script src="/docs/assets/swagger-ui-bundle.js"></script><script src="/docs/start.js"></script></body></html>"""

# validatorUrl null: Swagger UI would otherwise send the document to an outside validator
START = """window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#reference", deepLinking: true,
  validatorUrl: null, defaultModelsExpandDepth: 1, defaultModelExpandDepth: 2, tryItOutEnabled: false});"""

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


@bp.get("/docs")
def docs():
    return Response(PAGE, mimetype="text/html")


@bp.get("/docs/start.js")
def start():
    return Response(START, mimetype="text/javascript")


@bp.after_request
def _headers(resp):
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp
