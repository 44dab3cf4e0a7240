"""KServe model server for the reservation model (Open Inference Protocol v2).

Filled in by a later issue; the package exists so the workspace shows the architecture.
"""
