"""Typed exceptions of the inference library.

Every error a user can trigger with bad input is a subclass of :class:`MechscopeError` and says,
in its message, what was wrong and with which value, so callers (and the HTTP layer) can show it.
"""

from __future__ import annotations


def _rebuilt(cls: type, args: tuple, attributes: dict) -> "MechscopeError":
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(attributes)
    return error


class MechscopeError(Exception):
    """Base class of every error mechscope raises on purpose."""

    def __reduce__(self):
        # Pickled with its attributes (``field``, ...) whatever the subclass's constructor takes:
        # errors come back from the server's worker processes this way.
        return _rebuilt, (type(self), self.args, dict(self.__dict__))


class InvalidInputError(MechscopeError, ValueError):
    """A value passed by the caller is not acceptable. ``field`` names the offending argument."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class EmptyPromptError(InvalidInputError):
    pass


class PromptTooLongError(InvalidInputError):
    pass


class TokenOutOfRangeError(InvalidInputError):
    pass


class UnknownTokenError(InvalidInputError):
    pass


class UnknownHookError(InvalidInputError, KeyError):
    """A hook point name that the model does not have. The message lists close matches."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0] if self.args else ""


class ShapeMismatchError(InvalidInputError):
    pass


class CheckpointError(MechscopeError):
    """A checkpoint file or directory is missing, corrupt, or not in the expected format."""


class ChecksumError(CheckpointError):
    pass


class DownloadError(MechscopeError):
    """A file could not be fetched from a remote store (hub, blob storage)."""
