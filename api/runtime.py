"""The per-process runtime: stores, API keys and the live engines of every flow.

Engines are built in the process that serves (after gunicorn forks). Every activated ruleset
version is recorded with its sources in the database; each worker, on any host, polls the
newest version per flow and rebuilds from those recorded sources, so all of them converge on
the same version, and each decision records the version that made it.
"""
from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import func, select

from adapters.store.db import make_engine, now, sessions, transaction
from adapters.store.decisions import DecisionStore, audit
from adapters.store.idempotency import IdempotencyStore
from adapters.store.models import RulesetVersion
from engine.decide import Decider
from engine.errors import RulesetError
from engine.language.flows import Sources, discover, load_flow

log = logging.getLogger("postsale.runtime")


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


def read_sources(directory) -> dict:
    return {name: text for name, text in Sources.from_dir(directory).files.items() if isinstance(text, str)}


class Runtime:
    def __init__(self, settings, keys, redis=None):
        self.settings = settings
        self.keys = keys
        self.redis = redis
        self.db = make_engine(settings.database_url)
        self.factory = sessions(self.db)
        self.decisions = DecisionStore(self.factory)
        self.idempotency = IdempotencyStore(self.factory, settings.idempotency_ttl_seconds, redis)
        self.scoring = build_scoring(settings, redis)
        self.deciders: dict[str, Decider] = {}
        self._events = None
        self._evaluating = None
        self._stop = threading.Event()
        self._seen_id = 0
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
        try:
            from pathlib import Path

            from adapters.store.knowledge import load_if_present
            load_if_present(self.db, self.factory, Path(__file__).resolve().parent.parent / "config" / "knowledge")
        except Exception as exc:  # noqa: BLE001 - decisions do not depend on the knowledge documents
            log.warning("could not load the knowledge documents: %s", exc)

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
        with self.factory() as s:
            top = s.scalar(select(func.max(RulesetVersion.id))) or 0
        if top <= self._seen_id and not force:
            return
        with self._lock:
            for name, row in self._latest().items():
                current = self.deciders.get(name)
                if current is not None and current.flow.version == row.version:
                    continue
                try:
                    flow = load_flow(Sources(f"rules/{name}", row.sources))
                except RulesetError as exc:
                    log.error("recorded version %s of flow %s does not load: %s", row.version, name, exc)
                    continue
                self._swap(name, Decider(flow, scoring=self.scoring))
            self._seen_id = max(self._seen_id, top)

    def _swap(self, name: str, decider: Decider) -> None:
        old = self.deciders.get(name)
        self.deciders[name] = decider
        if old is not None:
            old.close()
        log.info("flow %s now at version %s", name, decider.flow.version)

    def reload(self, actor: str | None, only=None) -> list[dict]:
        """Load rules/ from disk; all flows must compile or nothing changes (RulesetError)."""
        loaded, problems = {}, []
        for name, d in self.flow_dirs().items():
            if only is not None and name not in only:
                continue
            sources = read_sources(d)
            try:
                flow = load_flow(Sources(f"rules/{name}", sources))
                Decider(flow, "reference")
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
                    audit(s, actor, "ruleset.activated", name, {"version": flow.version, "previous": live})
                    changes.append({"flow": name, "version": flow.version, "changed": True, "previous": live})
            for name, (flow, _) in loaded.items():
                current = self.deciders.get(name)
                if current is None or current.flow.version != flow.version:
                    self._swap(name, Decider(flow, scoring=self.scoring))
        if self.redis is not None:
            try:
                self.redis.publish("postsale:rulesets", "reload")
            except Exception:  # noqa: BLE001 - the poll converges anyway
                log.warning("could not broadcast the reload through Redis")
        return changes

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
        from adapters.signals.evaluate import Evaluator
        self.events  # noqa: B018 - fails here, loudly, when the triggers do not load
        self._evaluating = threading.Thread(target=Evaluator(self).run_forever, args=(self._stop, poll),
                                            name="evaluations", daemon=True)
        self._evaluating.start()
        return self._evaluating

    def decider(self, name: str) -> Decider | None:
        self.sync()
        return self.deciders.get(name)

    def close(self) -> None:
        self._stop.set()
        if self._evaluating is not None:
            self._evaluating.join(timeout=5)
        for d in self.deciders.values():
            d.close()
        self.db.dispose()
