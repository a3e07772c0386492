"""Training TopK sparse autoencoders on a model's activations, streamed from token batches.

Recipe (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"):

- latents = TopK(ReLU-ed) of ``(x - b_dec) @ W_enc + b_enc``; reconstruction ``latents @ W_dec + b_dec``;
- loss = normalised MSE (squared error / the batch's total variance about its mean, i.e. 1 - EV)
  + ``aux_coefficient`` x AuxK loss: the ``aux_k`` largest pre-activations among *dead* latents
  (not active for ``dead_after_tokens`` tokens) must reconstruct the main reconstruction's residual;
  it gives dead latents a gradient that pulls them back to where the SAE still errs;
- inputs are scaled by ``c`` so that the first training batch has unit variance per feature (the
  learning rate then means the same whatever the activation scale); at the end the scale is folded
  into the biases (``b_enc /= c``, ``b_dec /= c``), which maps latents to ``latents / c``: the shipped
  SAE takes raw activations and its latent values are in the activation's own units;
- decoder rows are kept at unit norm (renormalised after every step); ``W_enc`` starts as ``W_dec.T``,
  ``b_dec`` as the mean of the first training batch;
- Adam, linear warm-up, constant learning rate, linear decay to 0 over the last ``decay_fraction``.

Every SAE of one run reads the same activation stream: one forward pass of the model serves all
hook points. Activations are gathered into a buffer of ``buffer_tokens`` tokens and shuffled
within it (a seeded generator), so a training batch mixes many documents and positions.
The run is deterministic given the token batches, the seed and the torch thread count.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from mechscope.inference.errors import InvalidInputError

from .config import SAEConfig, WeightProcessing
from .evaluation import SAEMetrics, evaluate_sae
from .sae import SparseAutoencoder


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of a TopK SAE training run (the same for every hook point of the run)."""

    n_latents: int = 512
    k: int = 32
    batch_tokens: int = 4096
    total_tokens: int = 2_000_000
    lr: float = 2e-3
    warmup_steps: int = 50
    decay_fraction: float = 0.2
    aux_k: int = 64
    aux_coefficient: float = 1 / 32
    dead_after_tokens: int = 250_000
    buffer_tokens: int = 65_536
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_latents", "k", "batch_tokens", "total_tokens", "aux_k", "dead_after_tokens", "buffer_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"TrainingConfig.{name} must be a positive integer, got {value!r}", field=name)
        if self.k > self.n_latents or self.aux_k > self.n_latents:
            raise InvalidInputError(f"k={self.k} and aux_k={self.aux_k} must not exceed n_latents={self.n_latents}",
                                    field="k")
        if self.buffer_tokens < self.batch_tokens:
            raise InvalidInputError(f"buffer_tokens={self.buffer_tokens} must be >= batch_tokens={self.batch_tokens}",
                                    field="buffer_tokens")
        if not self.lr > 0 or not 0 <= self.decay_fraction <= 1 or not self.aux_coefficient >= 0 or self.warmup_steps < 0:
            raise InvalidInputError(
                f"need lr > 0, 0 <= decay_fraction <= 1, aux_coefficient >= 0, warmup_steps >= 0; got lr={self.lr}, "
                f"decay_fraction={self.decay_fraction}, aux_coefficient={self.aux_coefficient}, "
                f"warmup_steps={self.warmup_steps}", field="config")

    @property
    def n_steps(self) -> int:
        return max(1, self.total_tokens // self.batch_tokens)

    def lr_at(self, step: int) -> float:
        """Learning rate at optimizer step ``step`` (0-based)."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        decay_steps = int(self.n_steps * self.decay_fraction)
        remaining = self.n_steps - step
        decay = min(1.0, remaining / decay_steps) if decay_steps else 1.0
        return self.lr * warm * decay

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------ activations
class _StopForward(Exception):
    """Raised by a hook once every wanted activation is stored: the rest of the forward is not needed."""


@torch.no_grad()
def harvest_activations(model, tokens: torch.Tensor, hook_points: Sequence[str]) -> dict[str, torch.Tensor]:
    """Activations ``[rows * pos, d]`` at ``hook_points`` for ``tokens``; the forward pass stops after
    the last of them (no unembedding is computed)."""
    model.check_hook_names(hook_points)
    order = {name: i for i, name in enumerate(model.hook_names)}
    last = max(hook_points, key=order.__getitem__)
    store: dict[str, torch.Tensor] = {}

    def keep(x: torch.Tensor, ctx) -> None:
        store[ctx.name] = x.detach().reshape(-1, x.shape[-1]).float().cpu()   # SAEs train in float32 here
        if ctx.name == last:
            raise _StopForward

    try:
        model(tokens, fwd_hooks={name: keep for name in hook_points})
    except _StopForward:
        pass
    return {name: store[name] for name in hook_points}


def stream_activations(model, token_batches: Iterable[torch.Tensor], hook_points: Sequence[str], *,
                       buffer_tokens: int, batch_tokens: int, generator: torch.Generator
                       ) -> Iterator[dict[str, torch.Tensor]]:
    """Endless (while ``token_batches`` lasts) stream of shuffled ``[batch_tokens, d]`` activation
    batches, one per hook point, all from the same tokens."""
    batches = iter(token_batches)
    exhausted = False
    while not exhausted:
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in hook_points}
        filled = 0
        while filled < buffer_tokens:
            try:
                tokens = next(batches)
            except StopIteration:
                exhausted = True
                break
            for name, acts in harvest_activations(model, tokens, hook_points).items():
                parts[name].append(acts)
            filled += tokens.numel()
        if filled < batch_tokens:
            return
        order = torch.randperm(filled, generator=generator)
        buffer = {name: torch.cat(chunks)[order] for name, chunks in parts.items()}
        for start in range(0, filled - batch_tokens + 1, batch_tokens):
            yield {name: acts[start:start + batch_tokens] for name, acts in buffer.items()}


# ------------------------------------------------------------------------------------------ one SAE
def input_scale(x: torch.Tensor) -> float:
    """The factor that gives activations ``x`` ``[tokens, d]`` unit variance per feature on average."""
    variance = (x - x.mean(0)).square().sum(1).mean().item() / x.shape[1]
    return 1.0 / variance ** 0.5 if variance > 0 else 1.0


def _hook_seed(seed: int, hook_point: str) -> int:
    return seed * 1_000_003 + zlib.crc32(hook_point.encode())


def init_topk_sae(config: SAEConfig, data_mean: torch.Tensor, seed: int) -> SparseAutoencoder:
    """A TopK SAE with random unit-norm decoder rows, ``W_enc = W_dec.T`` and ``b_dec`` = data mean."""
    gen = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(config.n_latents, config.d_in, generator=gen)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    tensors = {"W_enc": W_dec.T.contiguous(), "b_enc": torch.zeros(config.n_latents), "W_dec": W_dec,
               "b_dec": data_mean.float().clone()}
    return SparseAutoencoder.from_tensors(config, tensors)


@dataclasses.dataclass(frozen=True)
class StepStats:
    """What one optimizer step measured on its batch (before the update)."""

    loss: float
    aux_loss: float
    explained_variance: float
    l0: float
    dead_fraction: float


class TopKTrainer:
    """Trains one TopK SAE (already initialised) with normalised MSE + AuxK and unit-norm decoder rows."""

    def __init__(self, sae: SparseAutoencoder, config: TrainingConfig):
        if sae.config.activation != "topk":
            raise InvalidInputError(f"TopKTrainer trains topk SAEs, got activation {sae.config.activation!r}",
                                    field="sae")
        self.sae = sae
        self.config = config
        self.optimizer = torch.optim.Adam(sae.parameters(), lr=config.lr)
        self.tokens_since_active = torch.zeros(sae.n_latents, dtype=torch.long)
        self.steps = 0

    def step(self, x: torch.Tensor) -> StepStats:
        sae, cfg = self.sae, self.config
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr_at(self.steps)
        pre = sae.encode_pre(x)
        latents = sae.activate(pre)
        recon = latents @ sae.W_dec + sae.b_dec
        total_variance = (x - x.mean(0)).square().sum()
        residual = x - recon
        main = residual.square().sum() / total_variance

        active = (latents != 0).any(0)
        self.tokens_since_active += x.shape[0]
        self.tokens_since_active[active] = 0
        dead = self.tokens_since_active > cfg.dead_after_tokens
        aux = self._aux_loss(pre, residual.detach(), dead)
        loss = main + cfg.aux_coefficient * aux

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            sae.W_dec /= sae.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
        self.steps += 1
        return StepStats(loss=main.item(), aux_loss=aux.item(), explained_variance=1.0 - main.item(),
                         l0=(latents != 0).sum(1).double().mean().item(), dead_fraction=dead.double().mean().item())

    def _aux_loss(self, pre: torch.Tensor, residual: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
        """Normalised MSE of reconstructing ``residual`` from the top ``aux_k`` dead latents (0 if none).

        The selected pre-activations are used as they are (no ReLU), so a dead latent whose
        pre-activations are all negative still gets a gradient towards the residual."""
        n_dead = int(dead.sum())
        if n_dead == 0:
            return pre.new_zeros(())
        k = min(self.config.aux_k, n_dead)
        dead_pre = pre.masked_fill(~dead, float("-inf"))
        values, indices = dead_pre.topk(k, dim=-1)
        aux_latents = torch.zeros_like(pre).scatter(-1, indices, values)
        aux_recon = aux_latents @ self.sae.W_dec
        return (residual - aux_recon).square().sum() / (residual - residual.mean(0)).square().sum().clamp_min(1e-12)


# ------------------------------------------------------------------------------------------ a run
@dataclasses.dataclass
class TrainingResult:
    saes: dict[str, SparseAutoencoder]
    log: list[dict[str, Any]]
    """One record per hook point every ``log_every`` steps: step, tokens, loss, aux_loss, EV, L0, dead."""
    metrics: dict[str, SAEMetrics]
    """evaluate_sae on the held-out batches (empty if none were given)."""
    tokens_per_sae: int
    seconds: float


def train_saes(model, token_batches: Iterable[torch.Tensor], hook_points: Sequence[str], config: TrainingConfig, *,
               model_name: str | None = None, source: dict[str, Any] | None = None,
               eval_batches: Sequence[torch.Tensor] = (), log_every: int = 25, progress: bool = True,
               on_log: Callable[[dict[str, Any]], None] | None = None) -> TrainingResult:
    """Train one TopK SAE per hook point on activations of ``model`` over ``token_batches``.

    ``token_batches`` yields ``[rows, pos]`` token tensors (at least ``config.total_tokens`` tokens
    in all, or training stops early). Each SAE's config records its hook point, ``model_name``, that
    the model's weights are unprocessed (no centring, no LayerNorm folding), and ``source`` plus the
    training hyper-parameters and token count as provenance. ``eval_batches`` (held-out tokens) are
    scored with :func:`evaluate_sae` at the end.
    """
    if not hook_points or len(set(hook_points)) != len(hook_points):
        raise InvalidInputError(f"hook_points must be distinct and non-empty, got {list(hook_points)!r}",
                                field="hook_points")
    model.check_hook_names(hook_points)
    started = time.perf_counter()
    stream = stream_activations(model, token_batches, hook_points, buffer_tokens=config.buffer_tokens,
                                batch_tokens=config.batch_tokens,
                                generator=torch.Generator().manual_seed(config.seed))
    trainers: dict[str, TopKTrainer] = {}
    log: list[dict[str, Any]] = []
    tokens = 0
    bar = tqdm(total=config.n_steps, desc="training SAEs", unit="step", disable=not progress)
    for step, batch in enumerate(stream):
        if step >= config.n_steps:
            break
        if not trainers:
            scales = {name: input_scale(x) for name, x in batch.items()}
            trainers = _initial_trainers({n: x * scales[n] for n, x in batch.items()}, config, model_name, source)
        stats = {name: trainers[name].step(x * scales[name]) for name, x in batch.items()}
        tokens += config.batch_tokens
        if step % log_every == 0 or step == config.n_steps - 1:
            for name, s in stats.items():
                record = {"step": step, "tokens": tokens, "hook_point": name, **dataclasses.asdict(s)}
                log.append(record)
                if on_log is not None:
                    on_log(record)
        bar.set_postfix(loss=f"{_mean(s.loss for s in stats.values()):.4f}",
                        ev_min=f"{min(s.explained_variance for s in stats.values()):.3f}",
                        l0=f"{_mean(s.l0 for s in stats.values()):.1f}",
                        dead_max=f"{max(s.dead_fraction for s in stats.values()):.1%}")
        bar.update()
    bar.close()
    if not trainers:
        raise InvalidInputError("train_saes got fewer tokens than one training batch", field="token_batches")
    saes = {}
    for name, trainer in trainers.items():
        sae = trainer.sae.requires_grad_(False).eval()
        with torch.no_grad():
            sae.b_enc /= scales[name]
            sae.b_dec /= scales[name]
        provenance = dict(sae.config.source)
        provenance["training"] = {**provenance.get("training", {}), "tokens": tokens, "steps": trainer.steps,
                                  "input_scale": scales[name]}
        sae.config = sae.config.replace(source=provenance)
        saes[name] = sae
    metrics = {name: evaluate_sae(model, sae, eval_batches) for name, sae in saes.items()} if eval_batches else {}
    return TrainingResult(saes, log, metrics, tokens, time.perf_counter() - started)


def _initial_trainers(batch: dict[str, torch.Tensor], config: TrainingConfig, model_name: str | None,
                      source: dict[str, Any] | None) -> dict[str, TopKTrainer]:
    trainers = {}
    for name, x in batch.items():
        sae_config = SAEConfig(
            d_in=x.shape[-1], n_latents=config.n_latents, activation="topk", k=config.k, topk_postact="relu",
            hook_point=name, model_name=model_name, input_normalization="none", apply_b_dec_to_input=True,
            expected_weight_processing=WeightProcessing(center_writing_weights=False, fold_ln=False),
            source={**(source or {}), "format": "mechscope", "trainer": "mechscope.autoencoders.training",
                    "training": {"recipe": "topk+auxk", **config.to_dict()}},
        )
        sae = init_topk_sae(sae_config, x.mean(0), _hook_seed(config.seed, name))
        trainers[name] = TopKTrainer(sae, config)
    return trainers


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)
