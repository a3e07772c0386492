"""Blob keys: '/'-separated relative paths, the same on every store."""

from __future__ import annotations

from .errors import InvalidBlobKeyError


def validate_key(key: str) -> str:
    """Return ``key`` if it is a clean relative path, else raise :class:`InvalidBlobKeyError`.

    Rejected: empty keys, absolute paths, backslashes, empty segments ('a//b', trailing '/'),
    and '.' or '..' segments — anything that could escape a store's root or alias another key.
    """
    if not isinstance(key, str):
        raise InvalidBlobKeyError(f"blob key must be a string, got {type(key).__name__}: {key!r}", field="key")
    problem = _key_problem(key, allow_empty=False, allow_trailing_slash=False)
    if problem:
        raise InvalidBlobKeyError(f"invalid blob key {key!r}: {problem}", field="key")
    return key


def validate_prefix(prefix: str) -> str:
    """Validate a listing prefix: '' or a key-like string, possibly ending with '/'."""
    if not isinstance(prefix, str):
        raise InvalidBlobKeyError(f"prefix must be a string, got {type(prefix).__name__}: {prefix!r}", field="prefix")
    problem = _key_problem(prefix, allow_empty=True, allow_trailing_slash=True)
    if problem:
        raise InvalidBlobKeyError(f"invalid key prefix {prefix!r}: {problem}", field="prefix")
    return prefix


def join_key(*parts: str) -> str:
    """Join non-empty key parts with '/' (parts may themselves contain '/')."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _key_problem(key: str, *, allow_empty: bool, allow_trailing_slash: bool) -> str | None:
    if key == "":
        return None if allow_empty else "the key is empty"
    if "\\" in key:
        return "backslashes are not allowed (use '/')"
    if "\x00" in key:
        return "NUL characters are not allowed"
    if key.startswith("/"):
        return "absolute paths are not allowed"
    if len(key) >= 2 and key[1] == ":":
        return "drive letters are not allowed"
    body = key[:-1] if allow_trailing_slash and key.endswith("/") else key
    segments = body.split("/")
    if any(s == "" for s in segments):
        return "empty path segments are not allowed"
    if any(s in (".", "..") for s in segments):
        return "'.' and '..' segments are not allowed"
    return None
