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
  kurtosis; the count of tokens > 0 (density); exact min and max. Each batch's power sums are added
  in a fixed binary tree over batch indices (:mod:`.tree_sum`), so that shards' states
  merge into exactly the bits of one sequential build.
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

import torch

from mechscope.inference.errors import InvalidInputError

from .config import BuildConfig
from .records import lower_triangle_size
from .sampling import SALT_QUANTILE, gather_windows, load_into, row_uniforms, select_slots, slot_order, window_starts
from .tree_sum import levels_for, tree_add, tree_total

# Given example positions (batch row b, node n, window start s), the token-pair write-norm matrix of
# each window ([M, window(window+1)/2]) — only heads have one.
PairFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# Given (b, n, position), each head's write vector at its strongest key ([M, d_model]).
WriteFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]



class GroupState:
    """Running per-node state of one group (see module docs)."""

    def __init__(self, n_nodes: int, cfg: BuildConfig, n_ctx: int, *, token_pair: bool = False,
                 d_model: int | None = None, num_batches: int = 2 ** 20):
        if cfg.window > n_ctx:
            raise InvalidInputError(f"window={cfg.window} exceeds the corpus context of {n_ctx} tokens", field="window")
        self.cfg, self.n_ctx, self.n_nodes = cfg, n_ctx, n_nodes
        self.token_pair = token_pair
        n, k, w = n_nodes, cfg.top_k, cfg.window
        q, s, r, nb = cfg.quantile_bins, cfg.quantile_samples, cfg.random_samples, cfg.histogram_bins
        pairs = lower_triangle_size(w)
        f32, i32, i64, f64 = torch.float32, torch.int32, torch.long, torch.float64
        t: dict[str, torch.Tensor] = {"calibrated": torch.zeros((), dtype=torch.bool),
                                      "sparse": torch.zeros((), dtype=torch.bool)}
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
        # power sums 1..4 per node, one partial sum per tree level (see tree_sum)
        t["sums"] = torch.zeros(levels_for(num_batches), 4, n, dtype=f64)
        t["sums_block"] = torch.full((levels_for(num_batches),), -1, dtype=i64)
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
        load_into(self.t, state, "group state")

    # ---- one batch -------------------------------------------------------------------------------
    def update(self, acts: torch.Tensor, tokens: torch.Tensor, row0: int, rand: tuple, *,
               pair_fn: PairFn | None = None, write_fn: WriteFn | None = None) -> None:
        """Fold in one batch: ``acts`` [batch, pos, nodes] (any strides), ``tokens`` [batch, pos];
        ``rand`` is what :meth:`SharedSample.update` returned for this batch."""
        if acts.shape[-1] != self.n_nodes or acts.shape[:2] != tokens.shape:
            raise InvalidInputError(f"activations of shape {tuple(acts.shape)} do not fit {self.n_nodes} nodes "
                                    f"and tokens {tuple(tokens.shape)}", field="acts")
        acts = acts.detach().float()
        n_rows, n_pos = tokens.shape
        flat = acts.reshape(-1, self.n_nodes)
        if not bool(self.t["calibrated"]):
            self._calibrate(flat, acts.amax(dim=1))
        if bool(self.t["sparse"]):
            tok, node = flat.nonzero(as_tuple=True)
            values = flat[tok, node]
            rowmax = self._sparse_rowmax(tok // n_pos, node, values, n_rows, n_pos)
            self._update_moments_sparse(node, values, flat.shape[0], rowmax, row0 // self.cfg.batch_size)
        else:
            rowmax = acts.amax(dim=1)  # [B, N]
            self._update_moments_dense(flat, rowmax, row0 // self.cfg.batch_size)
        rows = torch.arange(row0, row0 + n_rows)

        full_argpos: list[torch.Tensor] = []

        def argpos(b: torch.Tensor, n: torch.Tensor) -> torch.Tensor:  # first position of the row's max
            if b.numel() * 8 < rowmax.numel() and not full_argpos:
                return acts[b[:, None], torch.arange(n_pos), n[:, None]].argmax(1)
            if not full_argpos:  # many entries (early batches): one pass over the batch is cheaper
                full_argpos.append(acts.argmax(dim=1))
            return full_argpos[0][b, n]

        self._update_top(acts, tokens, rows, rowmax, argpos, pair_fn, write_fn)
        self._update_quantiles(acts, tokens, rows, rowmax, argpos, pair_fn)
        self._update_random(acts, rand, pair_fn)

    def _calibrate(self, x: torch.Tensor, rowmax: torch.Tensor) -> None:
        lo, hi = x.amin(0), x.amax(0)
        span = hi - lo
        lower = torch.where(lo < 0, lo - span / 4, lo)
        upper = hi + span / 2
        width = (upper - lower) / self.cfg.histogram_bins
        self.t["hist_lo"] = lower
        self.t["hist_width"] = torch.where(width > 0, width, torch.ones_like(width))
        # Mostly-zero groups (SAE latents) take the sparse path: moments of x itself, nonzeros only.
        sparse = bool((x == 0).float().mean() > 0.5)
        self.t["sparse"] = torch.tensor(sparse)
        self.t["shift"] = torch.zeros(self.n_nodes, dtype=torch.float64) if sparse else x.double().mean(0)
        q = self.cfg.quantile_bins
        if q > 1:
            levels = torch.arange(1, q, dtype=torch.float32) / q
            self.t["q_bounds"] = torch.quantile(rowmax.T.contiguous(), levels, dim=1).T.contiguous()
        self.t["calibrated"] = torch.ones((), dtype=torch.bool)

    def _sparse_rowmax(self, row, node, values, n_rows: int, n_pos: int) -> torch.Tensor:
        """Per (row, node) max from the nonzero entries; rows with a zero entry count 0 too."""
        n = self.n_nodes
        cell = row * n + node
        rowmax = torch.full((n_rows * n,), float("-inf")).scatter_reduce_(0, cell, values, "amax")
        has_zero = torch.bincount(cell, minlength=n_rows * n) < n_pos
        return torch.where(has_zero, rowmax.clamp(min=0), rowmax).view(n_rows, n)

    def _hist_index(self, x: torch.Tensor, node: torch.Tensor | None) -> torch.Tensor:
        """Flat histogram cell (node * (bins + 2) + bin) of each value, as int32."""
        nb = self.cfg.histogram_bins
        lo = self.t["hist_lo"] if node is None else self.t["hist_lo"][node]
        width = self.t["hist_width"] if node is None else self.t["hist_width"][node]
        idx = x.sub(lo).div_(width).floor_().clamp_(-1, nb).add_(1)
        base = (torch.arange(self.n_nodes, dtype=torch.float32) if node is None else node.float()) * (nb + 2)
        return idx.add_(base).int()

    def _update_moments_dense(self, x: torch.Tensor, rowmax: torch.Tensor, batch: int) -> None:
        t = self.t
        ones = torch.ones(x.shape[0])

        def column_sums(m: torch.Tensor) -> torch.Tensor:  # a matrix-vector product beats sum(0) here
            return torch.mv(m.T, ones).double()

        d = x - t["shift"].float()
        sums = [column_sums(d)]
        p = d * d
        sums.append(column_sums(p))
        p.mul_(d)
        sums.append(column_sums(p))
        p.mul_(d)
        sums.append(column_sums(p))
        tree_add(t["sums"], t["sums_block"], batch, torch.stack(sums))
        t["n_pos"] += column_sums(torch.clamp(x, min=0, out=p).sign_()).round().long()
        del p, d
        t["count"] += x.shape[0]
        t["vmin"] = torch.minimum(t["vmin"], x.amin(0))
        t["vmax"] = torch.maximum(t["vmax"], rowmax.amax(0))
        cells = self.n_nodes * (self.cfg.histogram_bins + 2)
        t["hist"] += torch.bincount(self._hist_index(x, None).view(-1), minlength=cells).view(self.n_nodes, -1)

    def _update_moments_sparse(self, node: torch.Tensor, values: torch.Tensor, n_tokens: int,
                               rowmax: torch.Tensor, batch: int) -> None:
        t = self.t
        n = self.n_nodes
        v = values.double()  # shift is 0: zeros add nothing to the power sums
        p = v.clone()
        sums = []
        for _ in range(1, 5):
            sums.append(torch.bincount(node, weights=p, minlength=n))
            p.mul_(v)
        tree_add(t["sums"], t["sums_block"], batch, torch.stack(sums))
        t["count"] += n_tokens
        t["n_pos"] += torch.bincount(node[values > 0], minlength=n)
        zeros = n_tokens - torch.bincount(node, minlength=n)
        low = torch.full((n,), float("inf")).scatter_reduce_(0, node, values, "amin")
        t["vmin"] = torch.minimum(t["vmin"], torch.where(zeros > 0, low.clamp(max=0), low))
        t["vmax"] = torch.maximum(t["vmax"], rowmax.amax(0))
        nb = self.cfg.histogram_bins
        cells = torch.bincount(self._hist_index(values, node), minlength=n * (nb + 2)).view(n, nb + 2)
        zero_cell = self._hist_index(torch.zeros(n), torch.arange(n)).long() - torch.arange(n) * (nb + 2)
        cells[torch.arange(n), zero_cell] += zeros
        t["hist"] += cells

    def _update_top(self, acts, tokens, rows, rowmax, argpos, pair_fn, write_fn) -> None:
        by_node = rowmax.T  # [N, B]
        cand = (by_node.amax(1) > self.t["top_val"].amin(1)).nonzero().squeeze(1)
        if cand.numel() == 0:
            return
        (ui, si), b = select_slots(self.t["top_val"][cand], self.t["top_row"][cand], by_node[cand], rows,
                                   descending=True)
        self._fill("top", cand[ui], si, cand[ui], b, acts, tokens, rows, rowmax, argpos, pair_fn, write_fn)

    def _update_quantiles(self, acts, tokens, rows, rowmax, argpos, pair_fn) -> None:
        q = self.cfg.quantile_bins
        by_node = rowmax.T.contiguous()  # [N, B]
        bins = torch.searchsorted(self.t["q_bounds"], by_node, right=True) if q > 1 else \
            torch.zeros_like(by_node, dtype=torch.long)
        prio = row_uniforms(rows, self.cfg.seed, SALT_QUANTILE)
        # keys[n * Q + q, b] = the row's priority if row b falls in node n's bin q, else +inf
        match = bins[:, None, :] == torch.arange(q)[None, :, None]  # [N, Q, B]
        keys_new = torch.where(match, prio, torch.tensor(float("inf"), dtype=torch.float64)).view(-1, len(rows))
        units = (keys_new.amin(1) < self.t["q_prio"].amax(1)).nonzero().squeeze(1)
        if units.numel() == 0:
            return
        (ui, si), b = select_slots(self.t["q_prio"][units], self.t["q_row"][units], keys_new[units], rows,
                                   descending=False)
        u = units[ui]
        self.t["q_prio"][u, si] = prio[b]
        self._fill("q", u, si, u // q, b, acts, tokens, rows, rowmax, argpos, pair_fn, None)

    def _fill(self, prefix, u, si, n, b, acts, tokens, rows, rowmax, argpos, pair_fn, write_fn) -> None:
        """Write batch entries (batch row ``b`` for node ``n``) into slots ``(u, si)``."""
        if u.numel() == 0:
            return
        t = self.t
        pos = argpos(b, n)
        start = window_starts(pos, self.cfg, self.n_ctx)
        t[f"{prefix}_val"][u, si] = rowmax[b, n]
        t[f"{prefix}_row"][u, si] = rows[b]
        t[f"{prefix}_pos"][u, si] = pos.int()
        t[f"{prefix}_start"][u, si] = start.int()
        t[f"{prefix}_tok"][u, si] = gather_windows(tokens, b, start, self.cfg.window).int()
        t[f"{prefix}_act"][u, si] = gather_windows(acts, b, start, self.cfg.window, n)
        if self.token_pair and pair_fn is not None:
            t[f"{prefix}_pair"][u, si] = pair_fn(b, n, start)
        if self.token_pair and write_fn is not None and f"{prefix}_write" in t:
            t[f"{prefix}_write"][u, si] = write_fn(b, n, pos)

    def _update_random(self, acts, rand, pair_fn) -> None:
        slots, b, start = rand
        if slots.numel() == 0:
            return
        t = self.t
        windows = gather_windows(acts, b, start, self.cfg.window)  # [M, W, N]
        t["rand_act"][:, slots] = windows.permute(2, 0, 1)
        if self.token_pair and pair_fn is not None:
            m, n = slots.numel(), self.n_nodes
            pairs = pair_fn(b.repeat_interleave(n), torch.arange(n).repeat(m), start.repeat_interleave(n))
            t["rand_pair"][:, slots] = pairs.view(m, n, -1).permute(1, 0, 2)

    def ordered(self, rand_order: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The state with entries in display order: top examples by value (ties: lower row first),
        quantile samples by priority, random-sample slots in ``rand_order`` (from
        :meth:`SharedSample.ordered`); other tensors as they are. The order depends only on which
        entries are kept, never on the order the batches came in."""
        out = dict(self.t)
        for prefix, key, descending in (("top", "top_val", True), ("q", "q_prio", False)):
            order = slot_order(self.t[f"{prefix}_row"], self.t[key], descending=descending)
            arange = torch.arange(order.shape[0])[:, None]
            for name in self.t:
                if name.startswith(prefix + "_") and name != "q_bounds":
                    out[name] = self.t[name][arange, order]
        if rand_order is not None:
            for name in ("rand_act", "rand_pair"):
                if name in self.t:
                    out[name] = self.t[name][:, rand_order]
        return out

    # ---- results ---------------------------------------------------------------------------------
    def moments(self) -> dict[str, torch.Tensor]:
        """mean, variance, skewness, kurtosis (float64, [nodes]); NaN where undefined."""
        t = self.t
        count = t["count"].double()
        m1, e2, e3, e4 = tree_total(t["sums"], t["sums_block"]) / count
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
