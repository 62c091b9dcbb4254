"""Placeholder blueprint (filled in by the outcomes part)."""
from flask import Blueprint

bp = Blueprint("outcomes", __name__)
