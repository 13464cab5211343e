"""Triad edge agent: enrolls a device, reports telemetry, runs signed model rollouts,
serves the active model, and simulates fleets.

The package is a pure core: it imports neither Django nor torch, only the standard
library, numpy, psutil, httpx, onnxruntime, cryptography and websockets, so it runs on
small devices and outside the server. ``edge_agent.manifest`` is also the server's
implementation of the signed-document format.
"""

__version__ = "0.1.0"
