"""One decision on durable_rules: assert each part's working fact, chain to a fixpoint, clean up.

The `durable_rules_engine` extension is driven directly (its Host runs background threads
and is not thread-safe): one handle per part of a compiled flow per process, used under one
lock, built after gunicorn forks. Each flow version gets its own ruleset names, since durable
cannot replace a ruleset under the same name.

Each handle keeps one session for its whole life: a decision asserts its working fact into it
and retracts it at the end, which leaves the session empty (docs/engine.md, section 7), so a
decision costs no session set-up. A part's fact is asserted when the agenda first reaches the
part, so the facts that earlier parts derived are already in it.

Each ruleset also holds one rule of its own (`items` are `i<n>`) that only a start-up fact
matches: one action runs and completes in the session when the handle is built, which is what
makes `delete_state` safe on it later (docs/engine.md, section 6), even after the extension
refused a decision in it. `delete_ruleset` frees no session, so every handle dropped or closed
deletes its session first: a 100-rule session left behind is about 1 MB.
"""
from __future__ import annotations

import itertools
import os
import threading

import durable_rules_engine as _dre

from .actions import RulesOutcome, firing
from .compile.durable import DurableProgram, compile_flow, durable_json, fact_json
from .compile.limits import MAX_PROPERTIES
from .errors import DecisionError

_names = itertools.count(1)
_dumps = durable_json
SID = "1"
# the start-up rule: `k == 3` sits beside the kind tag `k == 1` every item tests first, so no
# working fact ever reaches it and the start-up fact reaches nothing else (limits.MAX_RULES
# keeps one rule free for it)
_START = "start"
_START_RULE = {"all": [{"m": {"k": 3}}]}
_START_FACT = '{"sid":"%s","id":"start","k":3}' % SID
_START_RETRACTION = '{"sid":"%s","id":"start"}' % SID


class DurableEngine:
    """A compiled flow bound to one durable ruleset handle per part in this process."""

    def __init__(self, flow, program: DurableProgram | None = None):
        self.flow = flow
        self.program = program or compile_flow(flow)
        self.fires = [firing(it) for it in self.program.items]
        self._handles: list = []
        self._lock = threading.Lock()
        self._closed = False
        self._open()

    def _open(self) -> None:
        self.name = f"{self.flow.name}_{self.flow.version}_{os.getpid()}_{next(_names)}"
        handles = []
        try:
            for n, part in enumerate(self.program.parts):
                handles.append(_dre.create_ruleset(f"{self.name}_{n}",
                                                   _dumps({**part.definition, _START: _START_RULE})))
                _start(handles[-1])
        except BaseException:
            for h in handles:
                _dre.delete_ruleset(h)  # a session whose start failed is never deleted
            raise
        self._handles = handles
        self._states = [None] * len(handles)
        self._ids = itertools.count(1)

    def run(self, wm: dict) -> RulesOutcome:
        with self._lock:
            if self._closed:
                raise DecisionError("engine-closed", f"engine {self.name} was closed")
            try:
                return self._run(wm) if self.program.strata is None else self._run_static(wm)
            except _dre.error as exc:
                # the extension's state for these sessions cannot be trusted: drop every handle
                # and start fresh ones
                self._recycle()
                raise DecisionError("engine-error", f"the rule engine refused this decision ({exc}); "
                                    "the engine was reset") from None

    def _recycle(self) -> None:
        old = self._handles
        self._open()
        _drop(old)

    def _run(self, wm: dict) -> RulesOutcome:
        program = self.program
        parts, handles, states = program.parts, self._handles, self._states
        fires, reads, watched, readers, keys = self.fires, program.reads, program.watched, program.readers, \
            program.keys
        limit = self.flow.max_firings
        assert_fact, retract_fact = _dre.assert_fact, _dre.retract_fact
        start_action, complete = _dre.start_action_for_state, _dre.complete_and_start_action
        ids = self._ids
        n = len(parts)
        out = RulesOutcome()
        docs: list = [None] * n      # the working fact asserted in each part's session
        open_ = [False] * n          # the part's session holds a started (already handled) action
        changed_in: list = [None] * n  # paths the part reads that changed since its fact was asserted
        pending: list = [None] * n   # items the part fired since its fact was asserted
        seen: set = set()
        fired = 0
        error = None
        k = 0
        try:
            while k < n:
                h, doc = handles[k], docs[k]
                if doc is None:
                    doc = docs[k] = parts[k].document(wm, SID, str(next(ids)))
                    _, states[k] = assert_fact(h, fact_json(doc))
                    pending[k], changed_in[k] = [], set()
                    res = start_action(h, states[k])
                    msg = res[1] if res else None
                elif changed_in[k]:
                    self._reassert(k, doc, wm, changed_in, pending, keys)
                    if open_[k]:
                        msg = complete(h, states[k])
                    else:
                        res = start_action(h, states[k])
                        msg = res[1] if res else None
                elif open_[k]:
                    msg = complete(h, states[k])
                else:
                    msg = None
                back = None
                while msg:
                    idx = int(msg[3:msg.index('"', 3)])
                    if idx not in seen and error is None:
                        # an `$or` yields one match per true branch: refraction is ours to enforce
                        seen.add(idx)
                        if fired >= limit:
                            error = DecisionError("firing-bound", f"more than {limit} firings; raise max_firings "
                                                  "in flow.yaml or simplify the chain")
                            break
                        fired += 1
                        pending[k].append(idx)
                        try:
                            changed = fires[idx](wm, out, reads[idx])
                        except Exception as exc:  # noqa: BLE001 - the sessions are emptied, then it is raised
                            error = exc
                            break
                        if changed and not watched.isdisjoint(changed):
                            for path in changed:
                                for j in readers.get(path, ()):
                                    if docs[j] is not None:
                                        changed_in[j].add(path)
                                        if j < k and (back is None or j < back):
                                            back = j
                            if back is not None:
                                break  # an earlier part may now fire first: this one resumes later
                            if changed_in[k]:
                                self._reassert(k, doc, wm, changed_in, pending, keys)
                    msg = complete(h, states[k])
                if error is not None:
                    open_[k] = msg is not None
                    break
                if back is not None:
                    open_[k] = True
                    k = back
                else:
                    open_[k] = False
                    k += 1
        except _dre.error:
            raise  # never touch a session the extension failed in: run() recycles the handles
        except BaseException:
            self._empty(docs, open_)
            raise
        self._empty(docs, open_)
        if error is not None:
            raise error
        return out

    def _run_static(self, wm: dict) -> RulesOutcome:
        """A program no part of which is ever re-asserted: before each stratum fires, the parts
        asked with it that can fire on the facts as they are are asked for their matches (one
        assert, the activations drained, one retract each); each match waits for its own
        stratum, whose matched items then fire in agenda order."""
        program = self.program
        parts, handles, states, whole = program.parts, self._handles, self._states, program.whole
        fires, reads, position, stratum = self.fires, program.reads, program.position, program.stratum
        limit = self.flow.max_firings
        assert_fact, retract_fact = _dre.assert_fact, _dre.retract_fact
        start_action, complete = _dre.start_action_for_state, _dre.complete_and_start_action
        out = RulesOutcome()
        doc = whole.document(wm, SID, str(next(self._ids)))
        retraction = '{"sid":"%s","id":"%s"}' % (SID, doc["id"])
        text = None
        fired = 0
        waiting: dict = {}  # stratum -> items matched for it
        for j, index in enumerate(program.strata):
            chosen: list = []
            index.select(wm, chosen)
            if chosen:
                shared = len(doc) <= MAX_PROPERTIES
                if shared and text is None:
                    text = fact_json(doc)
                for k in chosen:
                    needs = parts[k].needs
                    if needs is not None and needs.isdisjoint(wm):
                        continue
                    h = handles[k]
                    _, states[k] = assert_fact(h, text if shared else
                                               fact_json(parts[k].document(wm, SID, doc["id"])))
                    try:
                        res = start_action(h, states[k])
                        msg = res[1] if res else None
                        while msg:
                            idx = int(msg[3:msg.index('"', 3)])
                            at = stratum[idx]
                            if at in waiting:
                                waiting[at].append(idx)
                            else:
                                waiting[at] = [idx]
                            msg = complete(h, states[k])
                    except _dre.error:
                        raise  # never touch a session the extension failed in: run() recycles the handles
                    except BaseException:
                        retract_fact(h, retraction)
                        raise
                    retract_fact(h, retraction)
            due = waiting.pop(j, None)
            if due is None:
                continue
            if len(due) > 1:
                # parts interleave in agenda order; an `$or` yields one match per true branch
                due = sorted(set(due), key=position.__getitem__)
            changed_all: set = set()
            for idx in due:
                if fired >= limit:
                    raise DecisionError("firing-bound", f"more than {limit} firings; raise max_firings "
                                        "in flow.yaml or simplify the chain")
                fired += 1
                changed = fires[idx](wm, out, reads[idx])
                if changed:
                    changed_all |= changed
            if changed_all:
                text = self._extended(text, doc, wm, changed_all)
        return out

    def _extended(self, text, doc, wm, changed) -> str | None:
        """The shared working fact brought up to date after a stratum's firings, and its text
        when they only added properties (the text extended, not encoded again); else None."""
        program = self.program
        keys = program.keys
        if program.python_tests:
            program.whole.update(doc, wm, changed, (), keys)
            return None
        touched = []  # loops, not comprehensions: on Python 3.11 those build a function per call
        fresh = text is not None
        for p in changed:
            k = keys.get(p)
            if k is not None:
                touched.append(k)
                if k in doc:
                    fresh = False
        if not touched:
            return text
        program.whole.update(doc, wm, changed, (), keys)
        if not fresh:
            return None
        added = {}
        for k in touched:
            if k in doc:
                added[k] = doc[k]
        return text[:-1] + "," + durable_json(added)[1:] if added else text

    def _empty(self, docs, open_) -> None:
        """Retract every working fact: the agenda empties, so a started action completes into
        nothing and each session is ready for the next decision."""
        for j, doc in enumerate(docs):
            if doc is not None:
                h = self._handles[j]
                _dre.retract_fact(h, '{"sid":"%s","id":"%s"}' % (SID, doc["id"]))
                if open_[j]:
                    while _dre.complete_and_start_action(h, self._states[j]):
                        pass

    def _reassert(self, k, doc, wm, changed_in, pending, keys) -> None:
        h = self._handles[k]
        _dre.retract_fact(h, '{"sid":"%s","id":"%s"}' % (SID, doc["id"]))
        self.program.parts[k].update(doc, wm, changed_in[k], pending[k], keys)
        changed_in[k].clear()
        pending[k].clear()
        doc["id"] = str(next(self._ids))
        _dre.assert_fact(h, fact_json(doc))

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                _drop(self._handles)


def _start(h) -> None:
    """Run the start-up rule's action to completion in the handle's session."""
    _, state = _dre.assert_fact(h, _START_FACT)
    res = _dre.start_action_for_state(h, state)
    if res is None or _dre.complete_and_start_action(h, state) is not None:
        raise RuntimeError("the start-up rule did not run alone")  # the session is never deleted
    _dre.retract_fact(h, _START_RETRACTION)


def _drop(handles) -> None:
    """Delete each handle's session, then the handle: whatever a refused decision left in it."""
    for h in handles:
        try:
            _dre.delete_state(h, SID)
        except _dre.error:
            pass
        try:
            _dre.delete_ruleset(h)
        except _dre.error:
            pass
