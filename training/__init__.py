"""SonoGuide training: datasets, networks, training, evaluation and ONNX export."""

import app  # noqa: F401  (turns ONNX Runtime's telemetry off before onnxruntime loads)
