"""The one error the compression engine raises for input it refuses."""

from __future__ import annotations


class CompressionError(ValueError):
    """A model, data set, recipe or parameter the engine refuses; `field` names the input
    at fault (`model`, `calib`, `eval`, `recipe`, `parameters.ratio`, ...)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field


class CompressionCancelled(Exception):
    """Raised when the caller's `should_stop` asked the pipeline to stop."""
