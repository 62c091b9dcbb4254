"""The service layer: the use cases (decide, …) shared by the HTTP API, the workers and the
CLI, and the one composition root (`bootstrap`) that builds the runtime from settings.

It may import engine/ and adapters/; neither of them imports it, and it never imports api/.
"""
