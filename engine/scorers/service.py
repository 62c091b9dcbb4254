"""Scoring inside the decision pipeline: the selected models, the `scores.*` facts, drift.

    service = ScoringService.from_config("models", "churn-gbm@1.0.0,upsell-logistic@1.0.0")
    facts = service.apply(facts)              # a copy with facts["scores"] filled in
    facts, results = service.apply_explained(facts)   # ... and the ScoreResults (flags) for explain
    service.model_versions                    # {"churn_risk": "churn-gbm@1.0.0", ...}
    service.drift_reports()                   # PSI per feature per model (for /v1/models, gauges)

For each selected model whose output the caller did not supply, `score_facts` returns
`<output>`, `<output>_confidence` and `<output>_model` (e.g. churn_risk, churn_risk_confidence,
churn_risk_model), and `drift_alert` when `drift_fact=True`. Scores the caller sent are kept
(unless `overwrite=True`), so recorded decisions and YAML test cases that carry their own
scores decide the same way.
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from .artifact import parse
from .drift import DriftMonitor, DriftStore
from .errors import ArtifactError, ModelSelectionError
from .scorer import ArtifactScorer, Scorer, load

_REF = re.compile(r"^([a-z][a-z0-9_-]*)(?:@([0-9][0-9A-Za-z.+-]*))?$")


def _semver_key(v: str):
    core = re.split(r"[-+]", v, maxsplit=1)[0]
    return tuple(int(p) for p in core.split(".")) + ((1,) if v == core else (0,))


class ModelRegistry:
    """The artifacts in one folder (`models/` by default), loaded on demand and cached."""

    def __init__(self, directory="models"):
        self.directory = Path(directory)
        self._loaded: dict[str, ArtifactScorer] = {}

    def entries(self) -> list[dict]:
        """One row per *.json file: name, version, type, output, holdout AUC, or the load error."""
        rows = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                s = self.load_file(path)
                d = s.describe()
                rows.append({**d, "error": None})
            except ArtifactError as exc:
                rows.append({"file": str(path), "error": str(exc)})
        return rows

    def load_file(self, path) -> ArtifactScorer:
        key = str(path)
        if key not in self._loaded:
            self._loaded[key] = load(path)
        return self._loaded[key]

    def _index(self) -> dict[tuple[str, str], Path]:
        """(name, version) → file, reading only each file's name and version."""
        out = {}
        for path in sorted(self.directory.glob("*.json")):
            try:
                doc = parse(path.read_text(encoding="utf-8"), str(path))
            except (ArtifactError, OSError):
                continue
            if isinstance(doc, dict) and isinstance(doc.get("name"), str) and isinstance(doc.get("version"), str):
                out.setdefault((doc["name"], doc["version"]), path)
        return out

    def resolve(self, ref: str) -> ArtifactScorer:
        """`name@version` (or `name` alone: the highest version present) → the loaded scorer."""
        m = _REF.match(ref.strip())
        if not m:
            raise ModelSelectionError(f"{ref!r} is not a model reference (expected name@version, e.g. churn-gbm@1.0.0)")
        name, version = m.groups()
        index = self._index()
        if version is None:
            versions = sorted((v for (n, v) in index if n == name), key=_semver_key)
            if not versions:
                raise ModelSelectionError(f"no model named {name!r} in {self.directory}")
            version = versions[-1]
        path = index.get((name, version))
        if path is None:
            have = sorted(f"{n}@{v}" for (n, v) in index)
            raise ModelSelectionError(f"model {name}@{version} is not in {self.directory} "
                                      f"(have: {', '.join(have) or 'none'})")
        return self.load_file(path)


def parse_selection(selection) -> list[str]:
    """"churn-gbm@1.0.0, upsell-logistic@1.0.0" (or a list) → the references."""
    if isinstance(selection, str):
        return [s.strip() for s in selection.split(",") if s.strip()]
    return [str(s).strip() for s in selection]


class ScoringService:
    """The selected scorers (one per output fact) and the drift monitor."""

    def __init__(self, scorers, monitor: DriftMonitor | None = None, *, overwrite: bool = False,
                 drift_fact: bool = False, drift_refresh_seconds: float = 60.0, clock=time.monotonic):
        by_output: dict[str, Scorer] = {}
        for s in scorers:
            if s.output in by_output:
                raise ModelSelectionError(f"two models fill scores.{s.output}: {by_output[s.output].model_version} "
                                          f"and {s.model_version}")
            by_output[s.output] = s
        self.scorers = by_output
        self.monitor = monitor
        self.overwrite = overwrite
        self.drift_fact = drift_fact
        self.drift_refresh_seconds = drift_refresh_seconds
        self.clock = clock
        self._alert = False
        self._alert_at = None
        self._lock = threading.Lock()
        # drift needs the artifact's reference bins: any scorer with `reference` and `feature_names`
        # whose score() takes a bins list (ArtifactScorer does); other Scorers are just scored
        self._plan = tuple((out, s, monitor is not None and hasattr(s, "reference") and hasattr(s, "feature_names"))
                           for out, s in by_output.items())

    @classmethod
    def from_config(cls, models_dir="models", selection="", drift_store: DriftStore | None = None,
                    drift: bool = True, psi_threshold: float = 0.2, min_observations: int = 200, **kw):
        registry = ModelRegistry(models_dir)
        scorers = [registry.resolve(ref) for ref in parse_selection(selection)]
        monitor = DriftMonitor(drift_store, psi_threshold, min_observations) if drift else None
        service = cls(scorers, monitor, **kw)
        service.registry = registry
        return service

    @property
    def model_versions(self) -> dict[str, str]:
        return {out: s.model_version for out, s in self.scorers.items()}

    def results(self, facts: dict) -> dict:
        """output → ScoreResult for every output this call scores (flags included, for explanations)."""
        given = facts.get("scores") if isinstance(facts, dict) else None
        given = given if isinstance(given, dict) else {}
        out = {}
        for name, scorer, observed in self._plan:
            if not self.overwrite and given.get(name) is not None:
                continue
            if observed:
                bins: list = []
                out[name] = scorer.score(facts, bins)
                self.monitor.observe(scorer, bins)
            else:
                out[name] = scorer.score(facts)
        return out

    def score_facts(self, facts: dict) -> dict:
        """The flat `scores.*` facts to merge: {churn_risk, churn_risk_confidence, churn_risk_model, ...}."""
        return self._flat(self.results(facts))

    def _flat(self, results: dict) -> dict:
        out = {}
        for name, r in results.items():
            out[name] = r.value
            out[name + "_confidence"] = r.confidence
            out[name + "_model"] = r.model_version
        if self.drift_fact:
            out["drift_alert"] = self.drift_alert()
        return out

    def apply(self, facts: dict) -> dict:
        """A copy of `facts` with the scores merged into facts["scores"] (the input is not changed)."""
        return self.apply_explained(facts)[0]

    def apply_explained(self, facts: dict) -> tuple[dict, dict]:
        """(merged facts, {output: ScoreResult}): the results carry `raw` and the confidence `flags`
        for the decision's explanation."""
        if not isinstance(facts, dict):
            return facts, {}
        results = self.results(facts)
        new = self._flat(results)
        if not new:
            return facts, results
        merged = dict(facts)
        scores = dict(facts["scores"]) if isinstance(facts.get("scores"), dict) else {}
        scores.update(new)
        merged["scores"] = scores
        return merged, results

    # --- drift ---------------------------------------------------------------------------------
    def drift_reports(self) -> list[dict]:
        if self.monitor is None:
            return []
        return [self.monitor.report(s) for _, s, observed in self._plan if observed]

    def drift_alert(self) -> bool:
        """Any selected model drifted; recomputed at most every drift_refresh_seconds."""
        if self.monitor is None:
            return False
        now = self.clock()
        if self._alert_at is None or now - self._alert_at >= self.drift_refresh_seconds:
            with self._lock:
                if self._alert_at is None or now - self._alert_at >= self.drift_refresh_seconds:
                    self._alert = any(r["drift_alert"] for r in self.drift_reports())
                    self._alert_at = now
        return self._alert

    def models(self) -> list[dict]:
        """For GET /v1/models: each selected model's summary and its drift report."""
        reports = {r["model"]: r for r in self.drift_reports()}
        return [{**s.describe(), "drift": reports.get(s.model_version)} for s in self.scorers.values()]
