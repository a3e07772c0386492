"""A prompt's next-token predictions: its top and bottom k tokens and the ones a loss names, with
logit, probability and rank (rank 1 = the highest logit; tied tokens share the best rank)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mechscope.inference import gpt2_tokenizer

from .json_floats import float32_list
from .top_k import row_top_k


def predictions(logits: torch.Tensor, extra: Sequence[Sequence[int]] | None = None, k: int = 10
                ) -> list[tuple[list, list, list]]:
    """Per row of ``logits`` ``[batch, vocab]``: its top and bottom ``k`` next tokens and its
    ``extra`` ones (a list of token ids per row), as prediction dicts; rank 1 = highest logit (tied
    tokens share the best rank among them)."""
    logits = logits.float()
    batch, vocab = logits.shape
    k = min(k, vocab)
    # rank = 1 + the number of strictly larger logits, counted without a pass over the vocabulary
    # where the top/bottom k already tell it
    top_logits, top_ids = row_top_k(logits, k)                                    # descending
    # every logit above a top-k logit is in the top k: 1 + the first position of its value
    top_ranks = (top_logits.unsqueeze(2) == top_logits.unsqueeze(1)).to(torch.uint8).argmax(2) + 1
    bottom_logits, bottom_ids = row_top_k(logits, k, largest=False)                   # ascending
    extra = [list(e) for e in extra] if extra is not None else [[] for _ in range(batch)]
    if len(extra) != batch:
        raise ValueError(f"{len(extra)} lists of extra tokens for {batch} rows of logits")
    n_extra = max(map(len, extra), default=0)     # rows with fewer repeat their first (cut below)
    extra_ids = torch.tensor([e + e[:1] * (n_extra - len(e)) if e else [0] * n_extra for e in extra],
                             dtype=torch.long).reshape(batch, n_extra)
    extra_logits = logits.gather(1, extra_ids)
    # full counts only for the extra tokens and the bottom k's largest value (ties at that value
    # may reach beyond the bottom k; below it, every smaller-or-equal logit is in the bottom k)
    counted = torch.cat([bottom_logits[:, -1:], extra_logits], dim=1)
    # x > c exactly when x - c > 0 (finite floats: the difference of unequal ones is never 0), so
    # the count is a sum of signs in float32 (exact below 2**24), two rows at a time so that the
    # [rows, 1 + extra, vocab] differences stay in cache (scripts/bench/server.py measures the gain)
    larger = torch.cat([(rows.unsqueeze(1) - c.unsqueeze(2)).clamp_(min=0).sign_().sum(2)
                        for rows, c in zip(logits.split(2), counted.split(2))]).long()      # [batch, 1 + extra]
    at_most = (bottom_logits.unsqueeze(1) <= bottom_logits.unsqueeze(2)).sum(2)   # within the bottom k
    boundary = bottom_logits == bottom_logits[:, -1:]
    bottom_ranks = torch.where(boundary, larger[:, :1], vocab - at_most) + 1
    ids = torch.cat([top_ids, bottom_ids, extra_ids], dim=1)
    chosen = torch.cat([top_logits, bottom_logits, extra_logits], dim=1)
    ranks = torch.cat([top_ranks, bottom_ranks, larger[:, 1:] + 1], dim=1)
    top1 = top_logits[:, :1]     # subtracted before exp as log_softmax does, for the same rounding
    probs = ((chosen - top1) - (logits - top1).exp().sum(-1, keepdim=True).log()).exp()
    tok = gpt2_tokenizer()
    out = []
    chosen_logits, chosen_probs = float32_list(torch.stack([chosen, probs]))
    for row_extra, row_ids, row_logits, row_probs, row_ranks in zip(extra, ids.tolist(), chosen_logits,
                                                                    chosen_probs, ranks.tolist()):
        used = 2 * k + len(row_extra)
        preds = [{"token": s, "token_id": t, "logit": x, "prob": p, "rank": r}
                 for s, t, x, p, r in zip(tok.token_strs(row_ids[:used]), row_ids, row_logits, row_probs, row_ranks)]
        out.append((preds[:k], preds[k:2 * k], preds[2 * k:]))
    return out
