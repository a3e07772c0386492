"""Typed errors of the blob stores.

Every message names the store (its human-readable ``description``) and, where there is one, the key,
so a user can tell *which* file on *which* store went wrong.
"""

from __future__ import annotations

from mechscope.inference.errors import InvalidInputError, MechscopeError


class StoreError(MechscopeError):
    """A blob store operation failed. ``store`` is the store's description, ``key`` the blob key."""

    def __init__(self, message: str, *, store: str, key: str | None = None):
        super().__init__(message)
        self.store = store
        self.key = key


class BlobNotFoundError(StoreError, FileNotFoundError):
    """The store answered, and the blob is not there (distinct from the store being unreachable)."""

    def __init__(self, message: str, *, store: str, key: str | None = None):
        StoreError.__init__(self, message, store=store, key=key)

    def __str__(self) -> str:  # OSError would otherwise format its own way
        return self.args[0] if self.args else ""


class StoreUnavailableError(StoreError):
    """The store could not be reached (connection refused/reset, timeouts, 5xx) even after retries."""

    def __init__(self, message: str, *, store: str, key: str | None = None, attempts: int = 1):
        super().__init__(message, store=store, key=key)
        self.attempts = attempts


class StoreAccessDeniedError(StoreError):
    """The store refused the request (missing, wrong or expired credentials; no public access)."""


class InvalidBlobKeyError(InvalidInputError):
    """A blob key that is not a clean '/'-separated relative path."""


class InvalidStoreSpecError(InvalidInputError):
    """A store spec string that :func:`open_store` does not understand."""
