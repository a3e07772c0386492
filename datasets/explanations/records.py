"""What an explanation is, and the errors of this package.

An :class:`Explanation` is one text about one node with how it was made and how well it predicts the
node's activations: ``score`` is the simulation score (correlation between simulated and real
activations over every token of the held-out examples), with ``baselines`` scored the same way
(``random``: a random other node's explanation; ``empty``: the empty explanation), so a number
means something.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mechscope.inference.errors import InvalidInputError, MechscopeError


class ExplanationError(MechscopeError):
    """Explanations could not be made, read or written."""


class LlmError(ExplanationError):
    """The LLM endpoint failed (after retries) or answered something unusable."""


class LlmNotConfiguredError(LlmError):
    """No LLM endpoint is configured (set MECHSCOPE_LLM_BASE_URL and MECHSCOPE_LLM_MODEL)."""


class LlmAuthError(LlmError):
    """The endpoint refused the key (HTTP 401/403)."""


class LlmUnavailableError(LlmError):
    """The endpoint could not be reached, or kept failing (429/5xx) after every retry."""


class UnknownExplainerError(InvalidInputError):
    """An explainer name that is not one of the known explainers."""


@dataclass(frozen=True)
class NodeKey:
    """A component of a node dataset: kind, layer, index and (SAE latents) the SAE's hook point."""

    kind: str
    layer: int | None
    index: int
    hook_point: str | None = None

    def __str__(self) -> str:
        where = self.hook_point if self.hook_point else str(self.layer)
        return f"{self.kind}:{where}:{self.index}"

    @classmethod
    def parse(cls, text: str) -> "NodeKey":
        """``kind:layer:index`` or ``sae_latent:<hook point>:index`` (what ``str`` writes)."""
        parts = text.strip().split(":")
        if len(parts) != 3 or not parts[2].isdigit():
            raise InvalidInputError(f"node key {text!r} is not kind:layer:index or sae_latent:<hook point>:index",
                                    field="nodes")
        kind, where, index = parts
        if where.isdigit():
            return cls(kind, int(where), int(index))
        from mechscope.inference.hooks import layer_of
        return cls(kind, layer_of(where), int(index), where)


@dataclass
class Explanation:
    """One scored explanation of one node."""

    text: str
    method: str
    """How the text was made: 'offline/tokens+context', 'llm/<model>', 'tdb', ..."""
    explainer: str
    """Which explainer made it: 'offline', 'llm', 'tdb' (read from TDB's files)."""
    score: float | None = None
    scorer: str | None = None
    """What scored it: 'offline-simulator', 'llm-simulator', or 'tdb' (TDB's ev_correlation_score)."""
    baselines: dict[str, float | None] = field(default_factory=dict)
    detection: float | None = None
    """Balanced accuracy of telling held-out top examples from random ones with the explanation."""
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Explanation":
        known = {k: data[k] for k in ("text", "method", "explainer", "score", "scorer", "baselines", "detection",
                                      "details") if k in data}
        return cls(**known)
