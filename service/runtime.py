"""The per-process runtime: stores, the live engines of every flow, scorers, the inline
dispatcher and the citation cache; built by service.bootstrap, never at import.

Engines are built in the process that serves (after gunicorn forks). Every activated ruleset
version is recorded with its sources in the database; each process, on any host, adopts the
newest version per flow from a background watcher — a Redis broadcast wakes it at once, a poll
every `reload_poll_seconds` bounds the staleness without Redis — so all of them converge on
the same version without a query on the decision path, and each decision records the version
that made it. A flow's rollout candidate (service/rollout.py) is adopted the same way.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time

from sqlalchemy import func, select

from adapters.store.db import make_engine, now, sessions, transaction
from adapters.store.decisions import DecisionStore, audit
from adapters.store.idempotency import IdempotencyStore
from adapters.store.models import Rollout, RulesetVersion
from adapters.store.capacity import build as build_capacity
from engine.explore import Exploration
from engine.decide import Decider
from engine.response import ResponseModels
from engine.errors import RulesetError
from engine.language.flows import Sources, discover, load_flow

log = logging.getLogger("postsale.runtime")
CHANNEL = "postsale:rulesets"


def build_scoring(settings, redis=None):
    """The selected scorers (POSTSALE_MODELS); drift counts in Redis when there is one."""
    if not settings.models.strip():
        return None
    from engine.scorers.drift import InProcessDriftStore, RedisDriftStore
    from engine.scorers.service import ScoringService
    store = RedisDriftStore(redis) if redis is not None else InProcessDriftStore()
    return ScoringService.from_config(settings.models_dir, settings.models, drift_store=store,
                                      psi_threshold=settings.psi_threshold, drift_fact=True)


def load_triggers(settings):
    """The triggers, checked against the flows on disk; raises TriggerError listing every problem."""
    from engine.signals.triggers import load_triggers as load
    return load(settings.triggers_file, settings.rules_dir)


def responses_stamp(folder) -> tuple:
    """What changes when a response-model artifact is added, removed or rewritten: names, sizes
    and modification times of the folder's files (one directory read, per poll, not per decision)."""
    try:
        with os.scandir(folder) as entries:
            return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries
                                if e.name.endswith(".json") and e.is_file()))
    except OSError:
        return ()


def read_sources(directory) -> dict:
    return {name: text for name, text in Sources.from_dir(directory).files.items() if isinstance(text, str)}


def exploration_of(settings) -> Exploration:
    """The holdout and exploration the settings configure, as every decider of the runtime uses them."""
    return Exploration(settings.holdout_share, settings.explore_share, settings.experiment_salt)


class Runtime:
    def __init__(self, settings, redis=None):
        self.settings = settings
        self.redis = redis
        self.db = make_engine(settings.database_url)
        self.factory = sessions(self.db)
        self.decisions = DecisionStore(self.factory)
        self.idempotency = IdempotencyStore(self.factory, settings.idempotency_ttl_seconds, redis)
        self.scoring = build_scoring(settings, redis)
        self.responses = ResponseModels.from_dir(settings.models_dir / "response")
        self._responses_stamp = responses_stamp(settings.models_dir / "response")
        self.capacity = build_capacity(settings, self.factory)
        self.exploration = exploration_of(settings)
        self.deciders: dict[str, Decider] = {}
        self.candidates: dict = {}  # flow -> service.rollout.Candidate
        self._events = None
        self._evaluating = None
        self._watching = None
        self._dispatcher = None
        self._dispatcher_failed_at = None
        self._retired: list = []
        self.citations = Citations(self.factory)
        self._stop = threading.Event()
        self._seen = (0, 0)
        self._checked = 0.0
        self._purged = time.monotonic()
        self._lock = threading.Lock()

    # ---- ruleset versions ----
    def flow_dirs(self) -> dict:
        return {p.name: p for p in discover([self.settings.rules_dir])}

    def record_models(self, actor: str | None = None) -> None:
        """A change of model selection is recorded like a ruleset change (audit_log)."""
        from sqlalchemy import select as _select

        from adapters.store.models import AuditEntry
        selected = self.scoring.model_versions if self.scoring else {}
        with self.factory() as s:
            last = s.scalars(_select(AuditEntry).where(AuditEntry.kind == "models.selected")
                             .order_by(AuditEntry.id.desc()).limit(1)).first()
        previous = last.detail.get("models") if last else None
        if previous != selected:
            with transaction(self.factory) as s:
                audit(s, actor, "models.selected", "scorers", {"models": selected, "previous": previous})

    def start(self) -> None:
        """Serve the newest recorded version of each flow; record the files on disk for new flows.

        `postsale serve` activates the rules on disk before the workers start (a deploy), so
        workers only adopt what is recorded."""
        recorded = self._latest()
        missing = [name for name in self.flow_dirs() if name not in recorded]
        if missing:
            self.reload(actor="startup", only=missing)
        self.sync(force=True)
        self._seed_capacity()
        try:
            from adapters.store.knowledge import load_if_present
            load_if_present(self.db, self.factory, self.settings.knowledge_dir)
        except Exception as exc:  # noqa: BLE001 - decisions do not depend on the knowledge documents
            log.warning("could not load the knowledge documents: %s", exc)
        self.citations.clear()

    def _seed_capacity(self) -> None:
        """The capacity's value windows from recorded decisions, once, before serving."""
        from adapters.store.capacity import seed_from_records
        queues = {name: d.chooser.choice.human_queue for name, d in self.deciders.items()
                  if getattr(d, "chooser", None) is not None}
        try:
            seed_from_records(self.capacity, self.factory, queues)
        except Exception as exc:  # noqa: BLE001 - without history the window forms as decisions come
            log.warning("could not read recorded touch values for the capacity threshold: %s", exc)

    def _latest(self) -> dict:
        with self.factory() as s:
            newest = select(RulesetVersion.flow, func.max(RulesetVersion.id).label("id")).group_by(RulesetVersion.flow)
            ids = [row.id for row in s.execute(newest)]
            rows = s.scalars(select(RulesetVersion).where(RulesetVersion.id.in_(ids))).all() if ids else []
            return {r.flow: r for r in rows}

    def sync(self, force: bool = False) -> None:
        """Adopt versions other workers activated (checked at most every reload_poll_seconds)."""
        t = time.monotonic()
        if not force and t - self._checked < self.settings.reload_poll_seconds:
            return
        self._checked = t
        if t - self._purged > 3600:
            self._purged = t
            try:
                removed = self.idempotency.purge_expired()
                if removed:
                    log.info("removed %d expired idempotency keys", removed)
            except Exception:  # noqa: BLE001 - retried next hour
                log.warning("could not remove expired idempotency keys")
        self._adopt_responses()
        with self.factory() as s:  # one statement: the newest activation and rollout step
            stamp = tuple(v or 0 for v in s.execute(select(select(func.max(RulesetVersion.id)).scalar_subquery(),
                                                           select(func.max(Rollout.id)).scalar_subquery())).one())
        if stamp == self._seen and not force:
            return
        with self._lock:
            for name, row in self._latest().items():
                current = self.deciders.get(name)
                if current is not None and current.flow.version == row.version:
                    continue
                flow = _recorded(name, row, "recorded version")
                if flow is not None:
                    self._swap(name, self.decider_for(flow))
            self._adopt_candidates()
            self._seen = stamp

    def _adopt_candidates(self) -> None:
        """Serve each flow's running candidate as recorded; a stopped one is retired."""
        from adapters.store.rollouts import running
        from service.rollout import Candidate
        with self.factory() as s:
            started = running(s)
        for name in [n for n in self.candidates if n not in started]:
            self._retire(self.candidates.pop(name).decider)
            log.info("flow %s: candidate cleared", name)
        for name, row in started.items():
            current = self.candidates.get(name)
            if current is not None and current.rollout_id == row.id:
                continue
            flow = _recorded(name, row, "candidate")
            if flow is None:
                continue
            self.candidates[name] = Candidate(row.id, name, row.mode, row.share or 0.0, row.version,
                                              self.decider_for(flow), self.settings.experiment_salt)
            if current is not None:
                self._retire(current.decider)
            log.info("flow %s: candidate %s in %s%s", name, row.version, row.mode,
                     f" for {row.share:.0%} of accounts" if row.mode == "canary" else "")

    def _adopt_responses(self) -> None:
        """Serve the response models in the models folder when its stamp changed (new artifacts
        from `postsale models train-response`): every flow's engine is rebuilt with them, and a
        change of the models a flow serves (a flow naming a model without a version serves its
        newest) is logged and audited once, naming the old and new versions. A folder that does
        not load, or a flow whose models are no longer there, keeps what it served."""
        folder = self.settings.models_dir / "response"
        stamp = responses_stamp(folder)
        if stamp == self._responses_stamp:
            return
        self._responses_stamp = stamp
        try:
            responses = ResponseModels.from_dir(folder)
        except Exception as exc:  # noqa: BLE001 - a half-written or broken artifact: keep serving the loaded ones
            log.error("the response models in %s do not load; still serving %s: %s", folder,
                      ", ".join(self.responses.versions), str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return
        with self._lock:
            self.responses = responses
            for name, current in list(self.deciders.items()):
                decider = self._with_new_models(name, current)
                if decider is not None:
                    self._swap(name, decider)
                    log.info("flow %s now serves response models %s (was %s)", name, decider.chooser.versions,
                             current.chooser.versions)
                    self._audit_responses(name, decider.chooser.versions, current.chooser.versions)
            for name, candidate in list(self.candidates.items()):
                decider = self._with_new_models(name, candidate.decider)
                if decider is not None:
                    self.candidates[name] = dataclasses.replace(candidate, decider=decider)
                    self._retire(candidate.decider)
                    log.info("candidate %s of flow %s now serves response models %s", candidate.version, name,
                             decider.chooser.versions)

    def _with_new_models(self, name: str, current: Decider) -> Decider | None:
        """`current`'s flow on the loaded response models, or None when that changes nothing it
        serves or the models it names are gone (it keeps what it has)."""
        if current.chooser is None:
            return None
        try:
            decider = self.decider_for(current.flow)
        except RulesetError as exc:
            log.error("flow %s keeps its response models %s: %s", name, current.chooser.versions, exc)
            return None
        if decider.chooser.versions == current.chooser.versions:
            decider.close()
            return None
        return decider

    def _audit_responses(self, flow: str, versions: dict, previous: dict) -> None:
        """One audit row per change, whichever worker adopts it first (the others find it there)."""
        from adapters.store.models import AuditEntry
        with transaction(self.factory) as s:
            last = s.scalars(select(AuditEntry).where(AuditEntry.kind == "models.response.adopted",
                                                      AuditEntry.subject == flow)
                             .order_by(AuditEntry.id.desc()).limit(1)).first()
            if last is None or last.detail.get("models") != versions:
                audit(s, None, "models.response.adopted", flow, {"models": versions, "previous": previous})

    def decider_for(self, flow) -> Decider:
        return Decider(flow, scoring=self.scoring, responses=self.responses, capacity=self.capacity,
                       exploration=self.exploration)

    def _swap(self, name: str, decider: Decider) -> None:
        """A replaced engine is closed a while later: a decision on another thread may hold it."""
        old = self.deciders.get(name)
        self.deciders[name] = decider
        self._retire(old)
        log.info("flow %s now at version %s", name, decider.flow.version)

    def _retire(self, old: Decider | None) -> None:
        t = time.monotonic()
        keep = []
        for at, retired in self._retired:
            if t - at > RETIRE_SECONDS:
                retired.close()
            else:
                keep.append((at, retired))
        self._retired = keep + ([(t, old)] if old is not None else [])

    def reload(self, actor: str | None, only=None) -> list[dict]:
        """Load rules/ from disk; all flows must compile or nothing changes (RulesetError)."""
        loaded, problems = {}, []
        dirs = self.flow_dirs()
        for name, d in dirs.items():
            if only is not None and name not in only:
                continue
            sources = read_sources(d)
            try:
                flow = load_flow(Sources(f"rules/{name}", sources))
                Decider(flow, "reference", responses=self.responses)
            except RulesetError as exc:
                problems.extend(exc.diagnostics)
                continue
            loaded[name] = (flow, sources)
        if problems:
            raise RulesetError(problems)
        changes = []
        with self._lock:
            recorded = self._latest()
            with transaction(self.factory) as s:
                for name, (flow, sources) in loaded.items():
                    current = self.deciders.get(name)
                    live = current.flow.version if current else (recorded[name].version if name in recorded else None)
                    if live == flow.version:
                        changes.append({"flow": name, "version": flow.version, "changed": False})
                        continue
                    s.add(RulesetVersion(flow=name, version=flow.version, sources=sources, actor=actor, created_at=now()))
                    from adapters.git import commit_of
                    audit(s, actor, "ruleset.activated", name, {"version": flow.version, "previous": live,
                                                                "git": commit_of(dirs[name])})
                    changes.append({"flow": name, "version": flow.version, "changed": True, "previous": live})
            for name, (flow, _) in loaded.items():
                current = self.deciders.get(name)
                if current is None or current.flow.version != flow.version:
                    self._swap(name, self.decider_for(flow))
        self._broadcast()
        return changes

    def announce(self) -> None:
        """Adopt what was just recorded here and wake every other process's watcher."""
        self.sync(force=True)
        self._broadcast()

    def _broadcast(self) -> None:
        if self.redis is not None:
            try:
                self.redis.publish(CHANNEL, "reload")
            except Exception:  # noqa: BLE001 - the poll converges anyway
                log.warning("could not broadcast the reload through Redis")

    @property
    def events(self):
        """The event store, scheduling by the triggers (config/triggers.yaml); built on first use."""
        if self._events is None:
            from adapters.store.events import EventStore
            self._events = EventStore(self.factory, triggers=load_triggers(self.settings), redis=self.redis)
        return self._events

    def start_evaluations(self, poll: float = 1.0) -> threading.Thread | None:
        """Run the debounced evaluations in this process (POSTSALE_EVALUATE_IN_SERVER; on by
        default with SQLite, where no worker runs them). Safe in every gunicorn worker at once:
        each due row is claimed by one of them."""
        if not self.settings.evaluates_in_server or self._evaluating is not None:
            return None
        from service.evaluate import Evaluator
        self.events  # noqa: B018 - fails here, loudly, when the triggers do not load
        self._evaluating = threading.Thread(target=Evaluator(self).run_forever, args=(self._stop, poll),
                                            name="evaluations", daemon=True)
        self._evaluating.start()
        return self._evaluating

    def watch(self) -> threading.Thread | None:
        """Adopt new ruleset versions in the background (the decision path only reads
        `deciders`): woken by the Redis broadcast, polling every reload_poll_seconds anyway."""
        if self._watching is not None:
            return None
        self._watching = threading.Thread(target=self._watch, name="ruleset-watch", daemon=True)
        self._watching.start()
        return self._watching

    def _watch(self) -> None:
        wake = _Broadcast(self.redis, self._stop) if self.redis is not None else None
        if wake is not None:
            wake.subscribe()  # before the first check: a change announced meanwhile is not missed
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - the database is away: the live versions keep serving
                log.warning("could not check for new ruleset versions; again in %ss", self.settings.reload_poll_seconds)
            if wake is not None:
                if wake.wait(self.settings.reload_poll_seconds):
                    self._checked = float("-inf")
            else:
                self._stop.wait(self.settings.reload_poll_seconds)
        if wake is not None:
            wake.close()

    def decider(self, name: str) -> Decider | None:
        if self._watching is None:
            self.sync()
        return self.deciders.get(name)

    def dispatcher(self):
        """The inline Dispatcher, built on first use; None while the tool catalog or the contact
        policy does not load (tried again after a minute; the workers refuse to start on it)."""
        if self._dispatcher is not None:
            return self._dispatcher
        with self._lock:
            if self._dispatcher is not None:
                return self._dispatcher
            failed = self._dispatcher_failed_at
            if failed is not None and time.monotonic() - failed < RETRY_DISPATCHER_SECONDS:
                return None
            try:
                from adapters.dispatch.inline import build_dispatcher
                self._dispatcher = build_dispatcher(self.factory, self.redis, self.settings)
            except Exception as exc:  # noqa: BLE001 - the decision is recorded; workers will act
                self._dispatcher_failed_at = time.monotonic()
                log.error("inline dispatch unavailable: %s",
                          str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                return None
            self._dispatcher_failed_at = None
            return self._dispatcher

    def close(self) -> None:
        self._stop.set()
        for thread in (self._evaluating, self._watching):
            if thread is not None:
                thread.join(timeout=5)
        if self._dispatcher is not None:
            self._dispatcher.close()
        for d in [*self.deciders.values(), *(c.decider for c in self.candidates.values()),
                  *(r for _, r in self._retired)]:
            d.close()
        self.db.dispose()


def _recorded(name: str, row, what: str):
    """The flow of a recorded row's sources; None (logged) when they no longer load."""
    try:
        return load_flow(Sources(f"rules/{name}", row.sources))
    except RulesetError as exc:
        log.error("%s %s of flow %s does not load: %s", what, row.version, name, exc)
        return None


RETRY_DISPATCHER_SECONDS = 60.0
_NUMBERS = re.compile(r"[-+$]?\d[\d.,]*%?")
RETIRE_SECONDS = 30.0


class _Broadcast:
    """The ruleset-reload channel; `wait` is True when a reload was announced. A Redis that is
    away only makes the watcher fall back to its poll."""

    def __init__(self, redis, stop):
        self.redis, self.stop, self.pubsub = redis, stop, None

    def subscribe(self) -> None:
        try:
            if self.pubsub is None:
                self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                self.pubsub.subscribe(CHANNEL)
        except Exception:  # noqa: BLE001 - wait() tries again
            self.close()

    def wait(self, timeout: float) -> bool:
        try:
            if self.pubsub is None:
                self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                self.pubsub.subscribe(CHANNEL)
            deadline = time.monotonic() + timeout
            while not self.stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if self.pubsub.get_message(timeout=min(left, 0.5)) is not None:
                    return True
            return False
        except Exception:  # noqa: BLE001
            self.close()
            self.stop.wait(timeout)
            return False

    def close(self) -> None:
        if self.pubsub is not None:
            try:
                self.pubsub.close()
            except Exception:  # noqa: BLE001
                pass
            self.pubsub = None


class Citations:
    """Knowledge snippets for a decision's offers, cached per offer and reason *template*: the
    numbers a reason quotes (the account's values) are left out of the query, so the search runs
    once per rule's wording, not per decision. The documents load at start, when the cache is
    cleared; entries expire after `ttl` seconds in any case."""

    def __init__(self, factory, ttl: float = 300.0, size: int = 4096):
        self.factory, self.ttl, self.size = factory, ttl, size
        self._cache: dict = {}

    def clear(self) -> None:
        self._cache = {}

    def __call__(self, decision: dict) -> list:
        from adapters.store.knowledge import cite_for_decision
        try:
            return cite_for_decision(self.factory, decision, cite=self._cite)
        except Exception as exc:  # noqa: BLE001 - a knowledge failure never fails a decision
            log.warning("knowledge lookup failed: %s", exc)
            return []

    def _cite(self, offer: dict) -> list:
        from adapters.store.knowledge import cite_offer
        key = (offer["offer"], offer.get("kind"), _NUMBERS.sub(" ", offer.get("reason") or ""))
        entry = self._cache.get(key)
        if entry is None or time.monotonic() - entry[0] > self.ttl:
            entry = (time.monotonic(), cite_offer(self.factory, {"offer": key[0], "kind": key[1], "reason": key[2]}))
            if len(self._cache) >= self.size:
                self._cache = {}
            self._cache[key] = entry
        return entry[1]
