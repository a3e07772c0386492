"""Typed exceptions of the autoencoders library."""

from __future__ import annotations

from mechscope.inference.errors import CheckpointError, InvalidInputError


class SAEFormatError(CheckpointError):
    """An SAE file or directory does not hold what its format requires.

    The message names the file, the offending keys and, for shape problems, the expected and
    actual shapes. Raised for unknown or missing keys, shape mismatches, unknown architectures,
    missing hyper-parameters (e.g. ``k`` for TopK) and unsafe pickles.
    """


class SAEIncompatibleError(InvalidInputError):
    """An SAE cannot be used with a given model (width, layer or weight processing differ)."""

    def __init__(self, message: str, field: str | None = "sae"):
        super().__init__(message, field=field)
