"""Erasing a subject and retention: the use cases behind `postsale subject erase` and
`postsale retention run`. Which fact properties are personal is what each flow's facts schema
marks with `x-pii` (hash and keep: drop is never recorded); the rewriting, and how the audit
chain still verifies afterwards, is in adapters/store/erasure.py."""
from __future__ import annotations

import yaml

from adapters.store.erasure import erase_subject
from engine.pii import marks


def personal_paths(rt) -> dict:
    """flow → the property paths its facts schema marks personal."""
    out = {}
    for name, folder in rt.flow_dirs().items():
        path = folder / "facts.schema.yaml"
        schema = yaml.safe_load(path.read_text()) if path.exists() else {}
        out[name] = [p for p, _mode in marks(schema)]
    return out


def erase(rt, account: str, actor: str | None = None) -> dict:
    paths = personal_paths(rt)
    key = (rt.settings.pii_key or "").encode()
    return erase_subject(rt.factory, account, lambda flow: paths.get(flow, []), key, actor)
