"""The running, bounded-memory state of a node-dataset build, vectorised over nodes.

One :class:`GroupState` per group of nodes (the neurons of one MLP layer, the heads of one attention
layer, the latents of one SAE) sees every batch's per-token activations ``[batch, pos, nodes]`` and
keeps, per node:

* **top examples**: the ``top_k`` corpus rows with the largest per-row maximum, each as a window
  around its max token. Ties go to the earlier row. Per batch only nodes whose batch maximum beats
  their current k-th best are merged (``torch.sort`` on ``[candidates, k + batch]``).
* **quantile samples**: rows binned by their per-row maximum, with bin boundaries fixed from the
  first batch's per-row maxima (its 1/Q .. (Q-1)/Q quantiles per node: an estimate, so bins hold
  only roughly equal shares of the corpus); in each bin the ``quantile_samples`` rows of smallest
  random priority are kept — a uniform sample without replacement, independent of batch order.
* **moments** of the per-token activation: power sums of ``x - shift`` in float64 (``shift`` = the
  node's first-batch mean, which keeps the sums well conditioned), giving mean, variance, skewness,
  kurtosis; the count of tokens > 0 (density); exact min and max.
* **histogram**: ``histogram_bins`` equal bins over a range fixed from the first batch
  (``[lo, hi + span/2]`` with ``lo`` lowered by ``span/4`` when negative values were seen), plus
  under/overflow counts; the exact min/max sit beside it in the stats.

The random sample is shared by all nodes (:class:`SharedSample`): the ``random_samples`` corpus rows
of smallest random priority, each with a window at a random position; every group stores its
nodes' activations on those windows.

Random priorities are a hash of (seed, row index), so everything is a deterministic function of the
seed and the corpus, and the state can be checkpointed and resumed exactly (:meth:`state_dict`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mechscope.inference.errors import InvalidInputError

from .node_records import lower_triangle_size

# Given example positions (batch row b, node n, window start s), the token-pair write-norm matrix of
# each window ([M, window(window+1)/2]) — only heads have one.
PairFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# Given (b, n, position), each head's write vector at its strongest key ([M, d_model]).
WriteFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

_SALT_RANDOM_SAMPLE, _SALT_RANDOM_POSITION, _SALT_QUANTILE = 1, 2, 3
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


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
        from .node_records import NODE_KINDS
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


def row_uniforms(rows: torch.Tensor, seed: int, salt: int) -> torch.Tensor:
    """A float64 in [0, 1) per corpus row index: splitmix64 of (seed, salt, row)."""
    x = rows.cpu().numpy().astype(np.uint64)
    with np.errstate(over="ignore"):
        base = _splitmix64(np.array([seed * 1_000_003 + salt], dtype=np.uint64))
        z = _splitmix64(x ^ base)
    return torch.from_numpy((z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return z ^ (z >> np.uint64(31))


def window_starts(pos: torch.Tensor, cfg: BuildConfig, n_ctx: int) -> torch.Tensor:
    before = cfg.window - 1 - cfg.window_after
    return (pos.long() - before).clamp(min=0, max=n_ctx - cfg.window)


def gather_windows(x: torch.Tensor, b: torch.Tensor, start: torch.Tensor, width: int,
                   n: torch.Tensor | None = None) -> torch.Tensor:
    """``x[b, start:start+width(, n)]`` for each example: [M, width] (or [M, width, ...])."""
    cols = start.long()[:, None] + torch.arange(width)
    if n is None:
        return x[b.long()[:, None], cols]
    return x[b.long()[:, None], cols, n.long()[:, None]]


class SharedSample:
    """The random-sample rows shared by every node: smallest random priorities win."""

    def __init__(self, cfg: BuildConfig, n_ctx: int):
        self.cfg, self.n_ctx = cfg, n_ctx
        r, w = cfg.random_samples, cfg.window
        self.t = {
            "rand_prio": torch.full((r,), float("inf"), dtype=torch.float64),
            "rand_row": torch.full((r,), -1, dtype=torch.long),
            "rand_start": torch.zeros(r, dtype=torch.int32),
            "rand_tok": torch.zeros(r, w, dtype=torch.int32),
        }

    def update(self, tokens: torch.Tensor, row0: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Merge a batch; returns (old-slot index per slot, new slots, their batch rows, their starts)."""
        r = self.cfg.random_samples
        rows = torch.arange(row0, row0 + tokens.shape[0])
        prio = row_uniforms(rows, self.cfg.seed, _SALT_RANDOM_SAMPLE)
        keys = torch.cat([self.t["rand_prio"], prio])
        order = torch.sort(keys, stable=True).indices[:r]
        idx_old = order.clamp(max=r - 1)
        for name, value in self.t.items():
            self.t[name] = value[idx_old]
        slots = (order >= r).nonzero().squeeze(1)
        b = order[slots] - r
        centre = (row_uniforms(rows[b], self.cfg.seed, _SALT_RANDOM_POSITION) * self.n_ctx).long()
        start = window_starts(centre, self.cfg, self.n_ctx)
        self.t["rand_prio"][slots] = prio[b]
        self.t["rand_row"][slots] = rows[b]
        self.t["rand_start"][slots] = start.int()
        self.t["rand_tok"][slots] = gather_windows(tokens, b, start, self.cfg.window).int()
        return idx_old, slots, b, start

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.t)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        _load_into(self.t, state, "shared sample")


class GroupState:
    """Running per-node state of one group (see module docs)."""

    def __init__(self, n_nodes: int, cfg: BuildConfig, n_ctx: int, *, token_pair: bool = False,
                 d_model: int | None = None):
        if cfg.window > n_ctx:
            raise InvalidInputError(f"window={cfg.window} exceeds the corpus context of {n_ctx} tokens", field="window")
        self.cfg, self.n_ctx, self.n_nodes = cfg, n_ctx, n_nodes
        self.token_pair = token_pair
        n, k, w = n_nodes, cfg.top_k, cfg.window
        q, s, r, nb = cfg.quantile_bins, cfg.quantile_samples, cfg.random_samples, cfg.histogram_bins
        pairs = lower_triangle_size(w)
        f32, i32, i64, f64 = torch.float32, torch.int32, torch.long, torch.float64
        t: dict[str, torch.Tensor] = {"calibrated": torch.zeros((), dtype=torch.bool)}
        for prefix, shape in (("top", (n, k)), ("q", (n * q, s))):
            t[f"{prefix}_val"] = torch.full(shape, float("-inf"), dtype=f32)
            t[f"{prefix}_row"] = torch.full(shape, -1, dtype=i64)
            t[f"{prefix}_pos"] = torch.zeros(shape, dtype=i32)
            t[f"{prefix}_start"] = torch.zeros(shape, dtype=i32)
            t[f"{prefix}_tok"] = torch.zeros(*shape, w, dtype=i32)
            t[f"{prefix}_act"] = torch.zeros(*shape, w, dtype=f32)
            if token_pair:
                t[f"{prefix}_pair"] = torch.zeros(*shape, pairs, dtype=f32)
        t["q_prio"] = torch.full((n * q, s), float("inf"), dtype=f64)
        t["q_bounds"] = torch.zeros(n, q - 1, dtype=f32)
        if token_pair:
            if d_model is None:
                raise InvalidInputError("token-pair groups need d_model for their write vectors", field="d_model")
            t["top_write"] = torch.zeros(n, k, d_model, dtype=f32)
        t["rand_act"] = torch.zeros(n, r, w, dtype=f32)
        if token_pair:
            t["rand_pair"] = torch.zeros(n, r, pairs, dtype=f32)
        t["count"] = torch.zeros((), dtype=i64)
        t["shift"] = torch.zeros(n, dtype=f64)
        for p in range(1, 5):
            t[f"sum{p}"] = torch.zeros(n, dtype=f64)
        t["n_pos"] = torch.zeros(n, dtype=i64)
        t["vmin"] = torch.full((n,), float("inf"), dtype=f32)
        t["vmax"] = torch.full((n,), float("-inf"), dtype=f32)
        t["hist_lo"] = torch.zeros(n, dtype=f32)
        t["hist_width"] = torch.ones(n, dtype=f32)
        t["hist"] = torch.zeros(n, nb + 2, dtype=i64)
        self.t = t

    # ---- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.t)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        _load_into(self.t, state, "group state")

    # ---- one batch -------------------------------------------------------------------------------
    def update(self, acts: torch.Tensor, tokens: torch.Tensor, row0: int, rand: tuple, *,
               pair_fn: PairFn | None = None, write_fn: WriteFn | None = None) -> None:
        """Fold in one batch: ``acts`` [batch, pos, nodes] (any strides), ``tokens`` [batch, pos]."""
        if acts.shape[-1] != self.n_nodes or acts.shape[:2] != tokens.shape:
            raise InvalidInputError(f"activations of shape {tuple(acts.shape)} do not fit {self.n_nodes} nodes "
                                    f"and tokens {tuple(tokens.shape)}", field="acts")
        acts = acts.detach().float()
        rowmax, argpos = acts.max(dim=1)  # [B, N]
        if not bool(self.t["calibrated"]):
            self._calibrate(acts, rowmax)
        self._update_moments(acts.reshape(-1, self.n_nodes))
        self._update_top(acts, tokens, row0, rowmax, argpos, pair_fn, write_fn)
        self._update_quantiles(acts, tokens, row0, rowmax, argpos, pair_fn)
        self._update_random(acts, rand, pair_fn)

    def _calibrate(self, acts: torch.Tensor, rowmax: torch.Tensor) -> None:
        x = acts.reshape(-1, self.n_nodes)
        lo, hi = x.amin(0), x.amax(0)
        span = hi - lo
        lower = torch.where(lo < 0, lo - span / 4, lo)
        upper = hi + span / 2
        width = (upper - lower) / self.cfg.histogram_bins
        self.t["hist_lo"] = lower
        self.t["hist_width"] = torch.where(width > 0, width, torch.ones_like(width))
        self.t["shift"] = x.double().mean(0)
        q = self.cfg.quantile_bins
        levels = torch.arange(1, q, dtype=torch.float32) / q
        self.t["q_bounds"] = torch.quantile(rowmax.T.contiguous(), levels, dim=1).T.contiguous() \
            if q > 1 else self.t["q_bounds"]
        self.t["calibrated"] = torch.ones((), dtype=torch.bool)

    def _update_moments(self, x: torch.Tensor) -> None:
        t = self.t
        d = x - t["shift"].float()
        d2 = d * d
        t["sum1"] += d.sum(0).double()
        t["sum2"] += d2.sum(0).double()
        t["sum3"] += (d2 * d).sum(0).double()
        t["sum4"] += (d2 * d2).sum(0).double()
        t["count"] += x.shape[0]
        t["n_pos"] += (x > 0).sum(0)
        t["vmin"] = torch.minimum(t["vmin"], x.amin(0))
        t["vmax"] = torch.maximum(t["vmax"], x.amax(0))
        nb = self.cfg.histogram_bins
        idx = ((x - t["hist_lo"]) / t["hist_width"]).floor_().clamp_(-1, nb).long()
        idx += 1 + torch.arange(self.n_nodes) * (nb + 2)
        t["hist"] += torch.bincount(idx.view(-1), minlength=self.n_nodes * (nb + 2)).view(self.n_nodes, nb + 2)

    def _update_top(self, acts, tokens, row0, rowmax, argpos, pair_fn, write_fn) -> None:
        k = self.cfg.top_k
        by_node = rowmax.T  # [N, B]
        cand = (by_node.amax(1) > self.t["top_val"][:, -1]).nonzero().squeeze(1)
        if cand.numel() == 0:
            return
        keys = torch.cat([self.t["top_val"][cand], by_node[cand]], 1)
        order = torch.sort(keys, dim=1, descending=True, stable=True).indices[:, :k]
        self._merge("top", cand, cand, order, k, acts, tokens, row0, rowmax, argpos, pair_fn, write_fn)

    def _update_quantiles(self, acts, tokens, row0, rowmax, argpos, pair_fn) -> None:
        q, s = self.cfg.quantile_bins, self.cfg.quantile_samples
        n_rows = rowmax.shape[0]
        by_node = rowmax.T.contiguous()  # [N, B]
        bins = torch.searchsorted(self.t["q_bounds"], by_node, right=True) if q > 1 else \
            torch.zeros_like(by_node, dtype=torch.long)
        prio = row_uniforms(torch.arange(row0, row0 + n_rows), self.cfg.seed, _SALT_QUANTILE)
        # keys[n, q, b] = the row's priority if row b falls in node n's bin q, else +inf
        match = bins[:, None, :] == torch.arange(q)[None, :, None]  # [N, Q, B]
        keys_new = torch.where(match, prio, torch.tensor(float("inf"), dtype=torch.float64)).view(-1, n_rows)
        units = (keys_new.amin(1) < self.t["q_prio"][:, -1]).nonzero().squeeze(1)
        if units.numel() == 0:
            return
        keys = torch.cat([self.t["q_prio"][units], keys_new[units]], 1)
        order = torch.sort(keys, dim=1, stable=True).indices[:, :s]
        nodes = units // q
        self._merge("q", units, nodes, order, s, acts, tokens, row0, rowmax, argpos, pair_fn, None, prio=prio)

    def _merge(self, prefix, units, nodes, order, slots, acts, tokens, row0, rowmax, argpos, pair_fn, write_fn,
               prio=None) -> None:
        """Reorder the kept entries of ``units`` by ``order`` (over old slots + batch rows) and fill the
        entries taken from the batch."""
        t = self.t
        from_batch = order >= slots
        idx_old = order.clamp(max=slots - 1)
        arange_units = torch.arange(units.numel())[:, None]
        names = [n for n in t if n.startswith(prefix + "_") and n not in (f"{prefix}_bounds",)]
        for name in names:
            t[name][units] = t[name][units][arange_units, idx_old]
        ui, si = from_batch.nonzero(as_tuple=True)
        if ui.numel() == 0:
            return
        b = order[ui, si] - slots
        n = nodes[ui]
        pos = argpos[b, n]
        start = window_starts(pos, self.cfg, self.n_ctx)
        u = units[ui]
        t[f"{prefix}_val"][u, si] = rowmax[b, n]
        t[f"{prefix}_row"][u, si] = b + row0
        t[f"{prefix}_pos"][u, si] = pos.int()
        t[f"{prefix}_start"][u, si] = start.int()
        t[f"{prefix}_tok"][u, si] = gather_windows(tokens, b, start, self.cfg.window).int()
        t[f"{prefix}_act"][u, si] = gather_windows(acts, b, start, self.cfg.window, n)
        if prio is not None:
            t[f"{prefix}_prio"][u, si] = prio[b]
        if self.token_pair and pair_fn is not None:
            t[f"{prefix}_pair"][u, si] = pair_fn(b, n, start)
        if self.token_pair and write_fn is not None and f"{prefix}_write" in t:
            t[f"{prefix}_write"][u, si] = write_fn(b, n, pos)

    def _update_random(self, acts, rand, pair_fn) -> None:
        idx_old, slots, b, start = rand
        t = self.t
        t["rand_act"] = t["rand_act"][:, idx_old]
        if self.token_pair:
            t["rand_pair"] = t["rand_pair"][:, idx_old]
        if slots.numel() == 0:
            return
        windows = gather_windows(acts, b, start, self.cfg.window)  # [M, W, N]
        t["rand_act"][:, slots] = windows.permute(2, 0, 1)
        if self.token_pair and pair_fn is not None:
            m, n = slots.numel(), self.n_nodes
            pairs = pair_fn(b.repeat_interleave(n), torch.arange(n).repeat(m), start.repeat_interleave(n))
            t["rand_pair"][:, slots] = pairs.view(m, n, -1).permute(1, 0, 2)

    # ---- results ---------------------------------------------------------------------------------
    def moments(self) -> dict[str, torch.Tensor]:
        """mean, variance, skewness, kurtosis (float64, [nodes]); NaN where undefined."""
        t = self.t
        count = t["count"].double()
        m1 = t["sum1"] / count
        e2, e3, e4 = t["sum2"] / count, t["sum3"] / count, t["sum4"] / count
        var = (e2 - m1 ** 2).clamp(min=0)
        mu3 = e3 - 3 * m1 * e2 + 2 * m1 ** 3
        mu4 = e4 - 4 * m1 * e3 + 6 * m1 ** 2 * e2 - 3 * m1 ** 4
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        ok = var > 0
        return {
            "mean": m1 + t["shift"],
            "variance": var,
            "skewness": torch.where(ok, mu3 / var.clamp(min=1e-300) ** 1.5, nan),
            "kurtosis": torch.where(ok, mu4 / var.clamp(min=1e-300) ** 2, nan),
            "density": t["n_pos"].double() / count,
        }


def _load_into(target: dict[str, torch.Tensor], state: dict[str, torch.Tensor], what: str) -> None:
    missing = sorted(set(target) - set(state))
    unknown = sorted(set(state) - set(target))
    if missing or unknown:
        raise InvalidInputError(f"checkpointed {what} does not match this build: missing {missing}, unknown {unknown}",
                                field="checkpoint")
    for name, value in state.items():
        if value.shape != target[name].shape or value.dtype != target[name].dtype:
            raise InvalidInputError(f"checkpointed {what} tensor {name!r} has shape {tuple(value.shape)} "
                                    f"{value.dtype}, expected {tuple(target[name].shape)} {target[name].dtype}",
                                    field="checkpoint")
        target[name] = value.clone()
