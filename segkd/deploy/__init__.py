"""Deployment: ONNX export and verification, inference backends, benchmarking, visualisation."""
