"""Scorers: lightweight ML models whose outputs become `scores.*` facts.

    from engine.scorers import ScoringService, load
    scorer = load("models/churn-gbm-1.0.0.json")
    scorer.score({"account": {...}, "usage": {...}})   # ScoreResult(value, confidence, model_version, raw, flags)

Serving is plain Python (no numpy, no scikit-learn); training lives in engine.scorers.training,
the only module that imports them. docs/models.md describes the artifact format, the features,
confidence and drift.
"""
from .artifact import columns_of, read as read_artifact, validate as validate_artifact
from .drift import DriftMonitor, DriftStoreError, InProcessDriftStore, RedisDriftStore, psi
from .errors import ArtifactError, ArtifactProblem, DatasetError, ModelSelectionError, ScorerError
from .scorer import ArtifactScorer, ScoreResult, Scorer, load
from .service import ModelRegistry, ScoringService, parse_selection

__all__ = [
    "ArtifactError", "ArtifactProblem", "ArtifactScorer", "DatasetError", "DriftMonitor", "DriftStoreError",
    "InProcessDriftStore", "ModelRegistry", "ModelSelectionError", "RedisDriftStore", "ScoreResult", "Scorer",
    "ScorerError", "ScoringService", "columns_of", "load", "parse_selection", "psi", "read_artifact",
    "validate_artifact",
]
