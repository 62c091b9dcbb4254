"""Operations: liveness, readiness, Prometheus metrics, the OpenAPI document and its docs."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from adapters.store.db import ping

from adapters import metrics

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "alive"})


@bp.get("/readyz")
def readyz():
    rt = current_app.extensions["postsale"]
    db_ok = ping(rt.db)
    rules_ok = bool(rt.deciders)
    try:
        triggers = rt.events.triggers
        triggers_state = f"{len(triggers.triggers)} loaded" if triggers is not None else "none"
        triggers_ok = True
    except Exception:  # noqa: BLE001 - reported, not raised: the problems are in the log and `postsale triggers check`
        triggers_state, triggers_ok = "do not load", False
    body = {"database": "ok" if db_ok else "unreachable", "rules": "loaded" if rules_ok else "not loaded",
            "triggers": triggers_state,
            "flows": {name: d.flow.version for name, d in sorted(rt.deciders.items())}}
    return jsonify(body), (200 if db_ok and rules_ok and triggers_ok else 503)


@bp.get("/metrics")
def prometheus():
    metrics.update_drift(current_app.extensions["postsale"].scoring)
    data, ctype = metrics.render()
    return Response(data, mimetype=ctype.split(";")[0], headers={"Content-Type": ctype})


@bp.get("/openapi.json")
def openapi():
    return jsonify(current_app.extensions["postsale.openapi"])


DOCS = """<!doctype html><html><head><meta charset="utf-8"><title>postsale API</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code,pre{background:#f4f4f4;padding:.1rem .3rem}h2{border-top:1px solid #ddd;padding-top:1rem}</style></head>
<body><h1>postsale API</h1><p>The machine-readable document is <a href="/openapi.json">/openapi.json</a>.</p>
<div id="ops"></div><script>
fetch('/openapi.json').then(r=>r.json()).then(spec=>{const el=document.getElementById('ops');
for(const [path,ops] of Object.entries(spec.paths)){for(const [m,op] of Object.entries(ops)){
const h=document.createElement('h2');h.textContent=m.toUpperCase()+' '+path;el.appendChild(h);
const p=document.createElement('p');p.textContent=op.summary||'';el.appendChild(p);
const pre=document.createElement('pre');pre.textContent=JSON.stringify(op.responses,null,1);el.appendChild(pre);}}});
</script></body></html>"""


@bp.get("/docs")
def docs():
    return Response(DOCS, mimetype="text/html")
