"""The API reference: /openapi.json is a document an OpenAPI validator accepts, describing every
/v1 route with no entry broken by docstring YAML, and its request examples fit their schemas;
/docs serves Swagger UI from this server."""
from __future__ import annotations

from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import OpenAPIV30SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

METHODS = ("get", "post", "put", "patch", "delete")


def nulls(node, path="$") -> list[str]:
    """Where a value is null: in the operations (from the views' docstrings), the trace of an
    unquoted comma in a YAML flow mapping (`{description: a, b, ...}` makes `b` a key with no value)."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in nulls(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in nulls(v, f"{path}[{i}]")]
    return [path] if node is None else []


def test_the_document_is_valid_openapi(client):
    spec = client.get("/openapi.json").json
    errors = [f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in OpenAPIV30SpecValidator(spec).iter_errors()]
    assert errors == []
    assert nulls(spec["paths"], "$.paths") == []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), (method, path)
            assert all(code.isdigit() and isinstance(r["description"], str) and r["description"]
                       for code, r in op["responses"].items()), (method, path)


def test_every_v1_route_is_documented(app, client):
    spec = client.get("/openapi.json").json
    served = {(m.lower(), r.rule.replace("<", "{").replace(">", "}"))
              for r in app.url_map.iter_rules() if r.rule.startswith("/v1/") for m in r.methods if m.lower() in METHODS}
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert served == documented


def test_request_examples_fit_their_schemas(client):
    spec = client.get("/openapi.json").json
    registry = Registry().with_resource("spec", Resource.from_contents(spec, default_specification=DRAFT4))
    shown = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            media = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if "example" not in media:
                continue
            schema = {"$ref": "spec#/components/schemas/" + media["schema"]["$ref"].rsplit("/", 1)[1]} \
                if "$ref" in media["schema"] else {**media["schema"], "$id": "spec-inline"}
            if "oneOf" in media["schema"]:
                schema = {"oneOf": [{"$ref": "spec" + s["$ref"]} for s in media["schema"]["oneOf"]]}
            problems = [e.message for e in OAS30Validator(schema, registry=registry).iter_errors(media["example"])]
            assert problems == [], (method, path)
            shown += 1
    assert shown >= 4  # decide, events, approve, reject, outcomes


def test_the_quick_start_request_is_the_documented_example(client, root):
    import json
    spec = client.get("/openapi.json").json
    body = spec["paths"]["/v1/decisions"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert body == json.loads((root / "examples" / "decision-request.json").read_text())


def test_docs_serve_swagger_ui_from_this_server(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'src="/docs/assets/swagger-ui-bundle.js"' in html and "http" not in html.split("<body>")[1].split("/openapi.json")[0]
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/docs/start.js"):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.get_data()) > 20, asset
    assert "validatorUrl: null" in client.get("/docs/start.js").get_data(as_text=True)
