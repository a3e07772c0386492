"""Facts about a model's vocabulary that come from its weights."""

from __future__ import annotations

import torch


def shared_unembedding_mask(model) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """``[vocab]`` bool: True for tokens whose unembedding vector is exactly shared with another token.

    Such tokens always get identical logits, so a list of "most promoted tokens" would fill up with
    an arbitrary pick among them. The model organism has one such group: the ~47,600 tokens absent
    from its corpus share one embedding. Pretrained GPT-2 has none."""
    w = model.W_U.detach().T
    _, inverse, counts = torch.unique(w, dim=0, return_inverse=True, return_counts=True)
    return counts[inverse] > 1
