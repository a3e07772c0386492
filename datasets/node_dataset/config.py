"""What a node-dataset build keeps per node and how it runs (part of the dataset's manifest)."""

from __future__ import annotations

from dataclasses import dataclass

from mechscope.inference.errors import InvalidInputError


@dataclass(frozen=True)
class BuildConfig:
    """What a build keeps per node, and how it runs. Part of the dataset's manifest."""

    top_k: int = 20
    window: int = 32
    window_after: int = 8
    """Tokens shown after the chosen token (the window starts ``window - 1 - window_after`` before it,
    shifted to fit inside the row)."""
    random_samples: int = 20
    quantile_bins: int = 5
    quantile_samples: int = 5
    histogram_bins: int = 64
    logit_tokens: int = 10
    batch_size: int = 32
    checkpoint_every: int = 20
    """Checkpoint the running state every this many batches (0: never)."""
    seed: int = 0
    kinds: tuple[str, ...] = ("mlp_neuron", "attn_head", "sae_latent")

    def __post_init__(self) -> None:
        positive = ("top_k", "window", "random_samples", "quantile_bins", "quantile_samples", "histogram_bins",
                    "logit_tokens", "batch_size")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}", field=name)
        for name in ("window_after", "checkpoint_every", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}", field=name)
        if self.window_after >= self.window:
            raise InvalidInputError(f"window_after={self.window_after} must be smaller than window={self.window}",
                                    field="window_after")
        from .records import NODE_KINDS
        unknown = [k for k in self.kinds if k not in NODE_KINDS]
        if unknown or not self.kinds:
            raise InvalidInputError(f"kinds must be a non-empty subset of {list(NODE_KINDS)}, got {list(self.kinds)}",
                                    field="kinds")
        object.__setattr__(self, "kinds", tuple(self.kinds))

    def to_dict(self) -> dict:
        from dataclasses import asdict
        d = asdict(self)
        d["kinds"] = list(self.kinds)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BuildConfig":
        d = dict(d)
        d["kinds"] = tuple(d.get("kinds", cls.kinds))
        return cls(**d)
