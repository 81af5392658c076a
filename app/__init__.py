"""SonoGuide: real-time ultrasound guidance (research and training use, not a medical device)."""

import os

# Nothing leaves the machine and nothing is collected: ONNX Runtime's Linux build keeps an event
# queue in ~/.cache/Microsoft/DeveloperTools/.onnxruntime unless this is set when the library
# loads (its Python disable_telemetry_events() comes too late), so it is set here, before any
# module of the app imports onnxruntime. A user's own setting wins.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# Memory flat over hours of frames (see app/memory.py); before any thread allocates frames.
from sonoguide.memory import tune_allocator  # noqa: E402

tune_allocator()
