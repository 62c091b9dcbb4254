"""POST /v1/events (placeholder)."""
from flask import Blueprint

bp = Blueprint("events", __name__)
