"""How good is an SAE at its hook point? Reconstruction, sparsity and downstream-loss metrics.

:func:`evaluate_sae` runs a model on token batches and measures, over every token:

- ``mse``: mean over tokens and features of ``(recon - x)**2``;
- ``explained_variance``: ``1 - sum((recon - x)**2) / sum((x - mean)**2)``, the mean taken per feature
  over all evaluation tokens and the sums over tokens and the d_in features;
- ``l0``: mean number of non-zero latents per token;
- ``dead_fraction``: fraction of latents that are zero on every evaluation token;
- ``ce_loss_recovered``: ``(CE_zero - CE_spliced) / (CE_zero - CE_clean)`` where ``CE_spliced`` is the
  next-token cross-entropy with the activation REPLACED by the SAE's reconstruction (no error
  term) and ``CE_zero`` the one with the activation zeroed; 1 is a perfect SAE, 0 is no better
  than deleting the activation (NaN if zeroing does not change the loss);
- ``kl_div``: mean over every position of KL(clean || spliced) between next-token distributions.

Token batches are ``[rows, pos]`` LongTensors without padding (every position is a real token).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from mechscope.inference.errors import InvalidInputError

from .errors import SAEIncompatibleError
from .sae import SparseAutoencoder


@dataclasses.dataclass(frozen=True)
class SAEMetrics:
    """Metrics of one SAE at one hook point over ``n_tokens`` evaluation tokens."""

    hook_point: str
    n_tokens: int
    mse: float
    explained_variance: float
    l0: float
    dead_fraction: float
    ce_clean: float
    ce_spliced: float
    ce_zero_ablated: float
    ce_loss_recovered: float
    kl_div: float

    def to_dict(self) -> dict[str, float | int | str]:
        return dataclasses.asdict(self)


class _Totals:
    """Running float64 sums over evaluation tokens."""

    def __init__(self, d_in: int, n_latents: int):
        self.n_tokens = 0
        self.n_predictions = 0
        self.sum_x = torch.zeros(d_in, dtype=torch.float64)
        self.sum_x2 = torch.zeros(d_in, dtype=torch.float64)
        self.squared_error = 0.0
        self.active_latents = 0.0
        self.ever_active = torch.zeros(n_latents, dtype=torch.bool)
        self.ce = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
        self.kl = 0.0


def _resolve_hook_point(model, sae: SparseAutoencoder, hook_point: str | None) -> str:
    point = hook_point or sae.config.hook_point
    if not point:
        raise InvalidInputError("this SAE's config names no hook point; pass hook_point=...", field="hook_point")
    model.check_hook_names([point])
    return point


def _token_batches(batches: Iterable[torch.Tensor]) -> Iterable[torch.Tensor]:
    for index, batch in enumerate(batches):
        if not isinstance(batch, torch.Tensor) or batch.dim() != 2 or batch.dtype != torch.long:
            what = f"{batch.dtype} tensor of shape {list(batch.shape)}" if isinstance(batch, torch.Tensor) \
                else type(batch).__name__
            raise InvalidInputError(f"evaluation batch {index} must be a [rows, pos] LongTensor, got {what}",
                                    field="batches")
        yield batch


def _next_token_ce_sum(logits: torch.Tensor, tokens: torch.Tensor) -> float:
    """Summed cross-entropy of predicting ``tokens[:, 1:]`` from ``logits[:, :-1]``."""
    flat = logits[:, :-1].reshape(-1, logits.shape[-1])
    return F.cross_entropy(flat.double(), tokens[:, 1:].reshape(-1), reduction="sum").item()


@torch.no_grad()
def evaluate_sae(model, sae: SparseAutoencoder, batches: Iterable[torch.Tensor], *,
                 hook_point: str | None = None, rows_per_forward: int = 8) -> SAEMetrics:
    """Metrics of ``sae`` at ``hook_point`` (default: the one its config names) over ``batches``.

    ``batches`` is any finite iterable of ``[rows, pos]`` token tensors; they are run
    ``rows_per_forward`` rows at a time to bound memory (logits are ``rows x pos x vocab``).
    """
    point = _resolve_hook_point(model, sae, hook_point)
    if isinstance(rows_per_forward, bool) or not isinstance(rows_per_forward, int) or rows_per_forward < 1:
        raise InvalidInputError(f"rows_per_forward must be an integer >= 1, got {rows_per_forward!r}",
                                field="rows_per_forward")
    totals = _Totals(sae.d_in, sae.n_latents)

    weight = next(sae.parameters())   # the SAE may sit elsewhere than the model (device, dtype)

    def splice_reconstruction(x: torch.Tensor, ctx) -> torch.Tensor:
        return sae(x.to(weight.device, weight.dtype)).to(x)

    def zero(x: torch.Tensor, ctx) -> torch.Tensor:
        return torch.zeros_like(x)

    for batch in _token_batches(batches):
        for tokens in batch.split(rows_per_forward):
            tokens = tokens.to(model.wte.weight.device)
            clean_logits, cache = model.run_with_cache(tokens, names=[point])
            x = cache[point].to(weight.device, weight.dtype)
            if x.shape[-1] != sae.d_in:
                raise SAEIncompatibleError(
                    f"the activation at {point!r} has width {x.shape[-1]}, but the SAE's d_in is {sae.d_in}")
            _add_reconstruction_stats(totals, sae, x.reshape(-1, x.shape[-1]))
            spliced_logits = model(tokens, fwd_hooks={point: splice_reconstruction})
            zero_logits = model(tokens, fwd_hooks={point: zero})
            totals.ce["clean"] += _next_token_ce_sum(clean_logits, tokens)
            totals.ce["spliced"] += _next_token_ce_sum(spliced_logits, tokens)
            totals.ce["zero"] += _next_token_ce_sum(zero_logits, tokens)
            totals.n_predictions += tokens.shape[0] * (tokens.shape[1] - 1)
            clean_logp = clean_logits.double().log_softmax(-1)
            spliced_logp = spliced_logits.double().log_softmax(-1)
            totals.kl += F.kl_div(spliced_logp, clean_logp, log_target=True, reduction="sum").item()
    if totals.n_tokens == 0:
        raise InvalidInputError("evaluate_sae got no tokens: the batches are empty", field="batches")
    return _metrics(point, totals)


def _add_reconstruction_stats(totals: _Totals, sae: SparseAutoencoder, x: torch.Tensor) -> None:
    out = sae.run(x)
    x64 = x.double().cpu()
    totals.n_tokens += x.shape[0]
    totals.sum_x += x64.sum(0)
    totals.sum_x2 += x64.square().sum(0)
    totals.squared_error += (out.reconstruction.double().cpu() - x64).square().sum().item()
    active = (out.latents != 0).cpu()
    totals.active_latents += active.sum().item()
    totals.ever_active |= active.any(0)


def _metrics(point: str, t: _Totals) -> SAEMetrics:
    n, d = t.n_tokens, t.sum_x.numel()
    total_variance = (t.sum_x2 - t.sum_x.square() / n).sum().item()
    ce_clean, ce_spliced, ce_zero = (t.ce[k] / t.n_predictions if t.n_predictions else math.nan
                                     for k in ("clean", "spliced", "zero"))
    denominator = ce_zero - ce_clean
    return SAEMetrics(
        hook_point=point,
        n_tokens=n,
        mse=t.squared_error / (n * d),
        explained_variance=1.0 - t.squared_error / total_variance if total_variance > 0 else math.nan,
        l0=t.active_latents / n,
        dead_fraction=1.0 - t.ever_active.double().mean().item(),
        ce_clean=ce_clean,
        ce_spliced=ce_spliced,
        ce_zero_ablated=ce_zero,
        ce_loss_recovered=(ce_zero - ce_spliced) / denominator if denominator != 0 else math.nan,
        kl_div=t.kl / n,
    )


TABLE_COLUMNS = (
    ("hook point", "hook_point", "{}"),
    ("EV", "explained_variance", "{:.4f}"),
    ("MSE", "mse", "{:.3g}"),
    ("L0", "l0", "{:.1f}"),
    ("dead", "dead_fraction", "{:.1%}"),
    ("CE clean", "ce_clean", "{:.4f}"),
    ("CE spliced", "ce_spliced", "{:.4f}"),
    ("CE zero-abl.", "ce_zero_ablated", "{:.4f}"),
    ("CE recovered", "ce_loss_recovered", "{:.4f}"),
    ("KL", "kl_div", "{:.4f}"),
)


def format_metrics_table(per_sae_metrics: Sequence[SAEMetrics]) -> str:
    """A Markdown table with one row per SAE (for SAE cards and logs)."""
    if not per_sae_metrics:
        raise InvalidInputError("format_metrics_table needs at least one SAEMetrics", field="per_sae_metrics")
    header = "| " + " | ".join(title for title, _, _ in TABLE_COLUMNS) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(TABLE_COLUMNS))) + "|"
    rows = ["| " + " | ".join(fmt.format(getattr(m, attr)) for _, attr, fmt in TABLE_COLUMNS) + " |"
            for m in per_sae_metrics]
    return "\n".join([header, rule, *rows])
