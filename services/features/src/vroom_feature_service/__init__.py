"""Feature service: on-the-fly, online and offline features.

Filled in by a later issue; the package exists so the workspace shows the architecture.
"""
