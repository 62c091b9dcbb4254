"""Placeholder blueprint (filled in by the kpis part)."""
from flask import Blueprint

bp = Blueprint("kpis", __name__)
