"""One decision on durable_rules: assert the working fact, chain to a fixpoint, clean up.

The `durable_rules_engine` extension is driven directly (its Host runs background threads
and is not thread-safe): one handle per compiled flow per process, used under a lock, built
after gunicorn forks. Each flow version gets its own ruleset name, since durable cannot
replace a ruleset under the same name.
"""
from __future__ import annotations

import itertools
import json
import os
import threading

import durable_rules_engine as _dre

from .actions import RulesOutcome, fire
from .compile.durable import CATCH, DurableProgram, compile_flow, durable_json, fact_json
from .errors import DecisionError

_names = itertools.count(1)
_dumps = durable_json


class DurableEngine:
    """A compiled flow bound to one durable ruleset handle in this process."""

    def __init__(self, flow, program: DurableProgram | None = None):
        self.flow = flow
        self.program = program or compile_flow(flow)
        self.name = f"{flow.name}_{flow.version}_{os.getpid()}_{next(_names)}"
        self._handle = _dre.create_ruleset(self.name, _dumps(self.program.definition))
        self._lock = threading.Lock()
        self._sids = itertools.count(1)
        self._closed = False

    def run(self, wm: dict) -> RulesOutcome:
        with self._lock:
            if self._closed:
                raise DecisionError("engine-closed", f"engine {self.name} was closed")
            try:
                return self._run(wm)
            except _dre.error as exc:
                # the extension's state for this session cannot be trusted (deleting it may
                # abort the process): drop the whole handle and start a fresh one
                self._recycle()
                raise DecisionError("engine-error", f"the rule engine refused this decision ({exc}); "
                                    "the engine was reset") from None

    def _recycle(self) -> None:
        old = self._handle
        self.name = f"{self.flow.name}_{self.flow.version}_{os.getpid()}_{next(_names)}"
        self._handle = _dre.create_ruleset(self.name, _dumps(self.program.definition))
        self._sids = itertools.count(1)
        try:
            _dre.delete_ruleset(old)
        except _dre.error:
            pass

    def _run(self, wm: dict) -> RulesOutcome:
        h = self._handle
        items = self.program.items
        limit = self.flow.max_firings
        sid = str(next(self._sids))
        out = RulesOutcome()
        program = self.program
        reads, watched = program.reads, program.watched
        fired: list[int] = []
        pending: list[int] = []  # fired since the working fact was last asserted
        seen: set[int] = set()
        version = 1
        doc = program.document(wm, sid)
        text = fact_json(doc)
        _, state = _dre.assert_fact(h, text)
        error = None
        try:  # from here every exit drives the session to its end and deletes it
            res = _dre.start_action_for_state(h, state)
            msg = res[1] if res else None
            while msg:
                name = msg[2:msg.index('"', 2)]
                idx = int(name[1:]) if name != CATCH else -1
                if idx >= 0 and idx not in seen and error is None:
                    # an `$or` yields one match per true branch: refraction is ours to enforce
                    seen.add(idx)
                    if len(fired) >= limit:
                        error = DecisionError("firing-bound", f"more than {limit} firings; raise max_firings in "
                                              "flow.yaml or simplify the chain")
                    else:
                        fired.append(idx)
                        pending.append(idx)
                        try:
                            changed = fire(items[idx], wm, out, reads[idx])
                        except Exception as exc:  # noqa: BLE001 - the session is drained, then it is raised
                            error, changed = exc, ()
                        if changed and not watched.isdisjoint(changed):
                            # durable identifies the fact by sid and id: retracting needs no more
                            _dre.retract_fact(h, '{"sid":"%s","id":"%s"}' % (sid, doc["id"]))
                            version += 1
                            program.update(doc, wm, changed, pending)
                            pending.clear()
                            doc["id"] = f"{sid}.{version}"
                            text = fact_json(doc)
                            _dre.assert_fact(h, text)
                if error is not None and text is not None:
                    # drain: retracting the fact empties the agenda, so the session ends cleanly
                    _dre.retract_fact(h, '{"sid":"%s","id":"%s"}' % (sid, doc["id"]))
                    text = None
                msg = _dre.complete_and_start_action(h, state)
        except _dre.error:
            raise  # never delete a session the extension failed in: run() recycles the handle
        _dre.delete_state(h, sid)
        if error is not None:
            raise error
        return out

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                _dre.delete_ruleset(self._handle)


__all__ = ["DurableEngine", "json"]
