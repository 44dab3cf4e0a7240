"""HTTP gateway (FastAPI): the public API.

Filled in by a later issue; the package exists so the workspace shows the architecture.
"""
