"""The shipped ONNX models with their cards and ship records (package data of sonoguide)."""
