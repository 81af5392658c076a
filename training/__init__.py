"""SonoGuide training: datasets, networks, training, evaluation and ONNX export (sonoguide.training;
importing it imports sonoguide first, which turns ONNX Runtime's telemetry off)."""
