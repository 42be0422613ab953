"""Techniques applied to trained models: explanations (06), compression and ONNX export (11), data
parallelism (12), federated learning and differential privacy (13). They build on kit.models and kit.train."""
