"""Adapters to the world outside the engine: storage now, external tools later."""
