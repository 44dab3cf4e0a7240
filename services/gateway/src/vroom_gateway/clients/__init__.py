"""Clients of the services the gateway calls: predictor (gRPC), feature service (HTTP),
model registry (MLflow)."""
