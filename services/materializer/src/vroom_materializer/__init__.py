"""Consumes vehicle events and writes their features to the online store.

Filled in by a later issue; the package exists so the workspace shows the architecture.
"""
