"""Triad edge agent: enrolls a device, reports telemetry, and simulates fleets.

The package is a pure core: it imports neither Django nor torch, only the standard
library, numpy, psutil and httpx, so it runs on small devices and outside the server.
"""

__version__ = "0.1.0"
