"""Errors of the debugger engine. Each names the request field at fault (``field``), so the HTTP
layer can answer 422 pointing at it."""

from __future__ import annotations

from mechscope.inference.errors import InvalidInputError


class RequestError(InvalidInputError):
    """A request that cannot be answered as asked; ``field`` is a dotted path such as
    ``loss.targets[0]`` or ``prompts[1].interventions[0].node.position``."""
