"""Build small in-memory flows for tests."""
from __future__ import annotations

import textwrap

from engine.language.flows import Sources, load_flow

SCHEMA = """
type: object
properties:
  account:
    type: object
    properties:
      id: {type: string}
      segment: {enum: [smb, mid_market, enterprise]}
      arr: {type: number}
      seats: {type: integer}
      tags: {type: array, items: {type: string}}
      name: {type: string}
      active: {type: boolean}
  contract:
    type: object
    properties:
      term_months: {type: integer}
      requested_discount: {type: number}
  scores:
    type: object
    properties:
      churn_risk: {type: number}
      churn_risk_confidence: {type: number}
"""

FLOW = """
flow: t
description: test flow
rulesets: [r.yaml]
"""


def sources(ruleset: str, flow: str = FLOW, schema: str = SCHEMA, extra: dict | None = None) -> Sources:
    files = {"flow.yaml": textwrap.dedent(flow), "r.yaml": textwrap.dedent(ruleset),
             "facts.schema.yaml": textwrap.dedent(schema)}
    files.update(extra or {})
    return Sources("mem", files)


def flow(ruleset: str, **kw):
    return load_flow(sources(ruleset, **kw))


HEAD = """
ruleset: r
description: test
owner: tests
facts_schema: facts.schema.yaml
"""
