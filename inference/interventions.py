"""Interventions: composable edits of activations at hook points, passed per call.

Each intervention names a hook point and, optionally, which part of the activation it touches —
by batch row, position, head, query/key (attention patterns), and ``index`` along the last axis
(a neuron, an SAE latent, a residual dimension). Selections are outer products: ``pos=[3, 4],
head=1`` touches head 1 at positions 3 and 4. Positions are absolute, so an intervention keeps its
meaning during cached generation. Give several in one call; at one hook point they apply in order.

    model(tokens, interventions=[ZeroAblate("blocks.0.attn.hook_z", head=3, pos=-1),
                                 AddVector("blocks.2.hook_resid_post", steer, scale=4.0)])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Union

import torch

from .errors import InvalidInputError, ShapeMismatchError
from .hooks import HookContext, hook_axes

Selector = Union[int, Sequence[int], slice, None]
_INDEX_AXES = ("d_model", "d_head", "d_mlp", "latent", "one")


def _axis_mask(sel: Selector, size: int, offset: int, what: str, hook: str) -> torch.Tensor:
    """Boolean mask over an axis of ``size`` elements whose first element has absolute index ``offset``."""
    mask = torch.zeros(size, dtype=torch.bool)
    if sel is None:
        mask[:] = True
        return mask
    if isinstance(sel, slice):
        mask[slice(sel.start - offset if sel.start is not None and sel.start >= 0 else sel.start,
                   sel.stop - offset if sel.stop is not None and sel.stop > 0 else sel.stop, sel.step)] = True
        return mask
    items = [sel] if isinstance(sel, int) else list(sel)
    total = size + offset
    for i in items:
        j = int(i) + total if int(i) < 0 else int(i)
        if not 0 <= j < total:
            raise InvalidInputError(f"{what} {int(i)} is out of range for {hook!r} (size {total})", field=what)
        if j >= offset:
            mask[j - offset] = True
    return mask


@dataclasses.dataclass(frozen=True)
class Intervention:
    """Base class: subclasses define :meth:`new_value` (the replacement, broadcast to the activation)."""

    hook_name: str
    batch: Selector = None
    pos: Selector = None
    head: Selector = None
    query: Selector = None
    key: Selector = None
    index: Selector = None

    def __post_init__(self) -> None:
        axes = hook_axes(self.hook_name)
        given = {"batch": self.batch, "pos": self.pos, "head": self.head, "query": self.query,
                 "key": self.key, "index": self.index}
        usable = set(axes) | ({"index"} if axes[-1] in _INDEX_AXES else set())
        for name, value in given.items():
            if value is not None and name not in usable:
                raise InvalidInputError(f"{type(self).__name__} on {self.hook_name!r} cannot select by {name!r}: "
                                        f"that hook's axes are {axes}", field=name)

    def selection_mask(self, x: torch.Tensor, ctx: HookContext) -> torch.Tensor:
        axes = hook_axes(self.hook_name)
        if x.dim() != len(axes):
            raise ShapeMismatchError(f"{self.hook_name!r} activation has {x.dim()} axes, expected {axes}")
        sels = {"batch": self.batch, "pos": self.pos, "head": self.head, "query": self.query, "key": self.key}
        mask = torch.ones((), dtype=torch.bool)
        for dim, axis in enumerate(axes):
            sel = self.index if axis in _INDEX_AXES else sels.get(axis)
            offset = ctx.pos_offset if axis in ("pos", "query") else 0
            what = "index" if axis in _INDEX_AXES else axis
            m = _axis_mask(sel, x.shape[dim], offset, what, self.hook_name)
            mask = mask.unsqueeze(-1) & m.view(*([1] * dim), -1)
        return mask.to(x.device)

    def new_value(self, x: torch.Tensor, ctx: HookContext) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, ctx: HookContext) -> torch.Tensor:
        mask = self.selection_mask(x, ctx)
        new = self.new_value(x, ctx)
        try:
            return torch.where(mask, new.to(x.dtype), x)
        except RuntimeError as e:
            raise ShapeMismatchError(f"{type(self).__name__} on {self.hook_name!r}: value of shape "
                                     f"{tuple(new.shape)} does not fit activation {tuple(x.shape)}") from e


def _pos_window(source: torch.Tensor, x: torch.Tensor, ctx: HookContext, hook: str) -> torch.Tensor:
    """The part of a full-sequence ``source`` that lines up with ``x`` (same absolute positions)."""
    axes = hook_axes(hook)
    axis = axes.index("pos") if "pos" in axes else axes.index("query") if "query" in axes else None
    if axis is not None and source.shape[axis] != x.shape[axis]:
        if source.shape[axis] < ctx.pos_offset + x.shape[axis]:
            raise ShapeMismatchError(f"patch source for {hook!r} covers {source.shape[axis]} positions, "
                                     f"the run needs {ctx.pos_offset + x.shape[axis]}", field="source")
        source = source.narrow(axis, ctx.pos_offset, x.shape[axis])
    expected = x.shape[1:]
    if source.shape[1:] != expected or source.shape[0] not in (1, x.shape[0]):
        raise ShapeMismatchError(f"patch source for {hook!r} has shape {tuple(source.shape)}, expected "
                                 f"{(x.shape[0],) + tuple(expected)} (or batch 1)", field="source")
    return source


@dataclasses.dataclass(frozen=True)
class SetActivation(Intervention):
    """Set the selected part to ``value`` (a number or a tensor broadcastable to the activation)."""

    value: torch.Tensor | float = 0.0

    def new_value(self, x, ctx):
        return torch.as_tensor(self.value, device=x.device)


@dataclasses.dataclass(frozen=True)
class ZeroAblate(Intervention):
    """Set the selected part to zero."""

    def new_value(self, x, ctx):
        return torch.zeros((), device=x.device)


@dataclasses.dataclass(frozen=True)
class MeanAblate(Intervention):
    """Replace the selected part with ``mean``: a tensor broadcastable to the activation without its
    batch axis (e.g. ``[d_mlp]``, or ``[pos, head, d_head]`` for per-position means)."""

    mean: torch.Tensor | None = None

    def new_value(self, x, ctx):
        if self.mean is None:
            raise InvalidInputError("MeanAblate needs a mean tensor", field="mean")
        mean = self.mean.to(x.device)
        try:
            return mean.expand(x.shape[1:]).unsqueeze(0)
        except RuntimeError:
            raise ShapeMismatchError(f"mean of shape {tuple(mean.shape)} does not broadcast to "
                                     f"{self.hook_name!r} without batch {tuple(x.shape[1:])}", field="mean") from None


@dataclasses.dataclass(frozen=True)
class Patch(Intervention):
    """Copy the selected part from ``source``: the same hook's activation from another run (same
    shape, or batch 1 to use one source row for every row)."""

    source: torch.Tensor | None = None

    def new_value(self, x, ctx):
        if self.source is None:
            raise InvalidInputError("Patch needs a source activation", field="source")
        return _pos_window(self.source.to(x.device), x, ctx, self.hook_name)


@dataclasses.dataclass(frozen=True)
class ResampleAblate(Intervention):
    """Replace the selected part with the same hook's activation on another input, drawn at random
    (seeded) for each batch row from ``source`` ``[n_source, ...]``."""

    source: torch.Tensor | None = None
    seed: int = 0

    def new_value(self, x, ctx):
        if self.source is None or self.source.shape[0] == 0:
            raise InvalidInputError("ResampleAblate needs a non-empty source batch", field="source")
        gen = torch.Generator().manual_seed(self.seed)
        rows = torch.randint(self.source.shape[0], (x.shape[0],), generator=gen)
        return _pos_window(self.source[rows].to(x.device), x, ctx, self.hook_name)


@dataclasses.dataclass(frozen=True)
class AddVector(Intervention):
    """Add ``scale * vector`` (broadcastable to the activation) to the selected part: steering."""

    vector: torch.Tensor | None = None
    scale: float = 1.0

    def new_value(self, x, ctx):
        if self.vector is None:
            raise InvalidInputError("AddVector needs a vector", field="vector")
        return x + self.scale * self.vector.to(x.device, x.dtype)


@dataclasses.dataclass(frozen=True)
class MaskedPatch(Intervention):
    """Replace the activation with ``source`` wherever the boolean ``mask`` is set (both broadcastable
    to the activation, aligned with its positions). One of these does the work of many
    :class:`Patch` es, e.g. a patching sweep with one patched cell per batch row."""

    mask: torch.Tensor | None = None
    source: torch.Tensor | None = None

    def selection_mask(self, x, ctx):
        if self.mask is None:
            raise InvalidInputError("MaskedPatch needs a mask", field="mask")
        return _pos_window_mask(self.mask.to(x.device), x, ctx, self.hook_name)

    def new_value(self, x, ctx):
        if self.source is None:
            raise InvalidInputError("MaskedPatch needs a source", field="source")
        return _pos_window_mask(self.source.to(x.device), x, ctx, self.hook_name)


def _pos_window_mask(t: torch.Tensor, x: torch.Tensor, ctx: HookContext, hook: str) -> torch.Tensor:
    axes = hook_axes(hook)
    axis = axes.index("pos") if "pos" in axes else axes.index("query") if "query" in axes else None
    if axis is not None and t.dim() == x.dim() and t.shape[axis] != x.shape[axis]:
        t = t.narrow(axis, ctx.pos_offset, x.shape[axis])
    return t


@dataclasses.dataclass(frozen=True)
class OnRows:
    """Run ``inner`` on batch rows ``[start, stop)`` only, as if those rows were the whole batch.

    This lets independent requests share one batched forward pass: each request's interventions
    (whose ``batch`` selectors, patch sources and resampling draws count rows from 0) are wrapped
    with the rows the request occupies; the other rows pass through untouched."""

    inner: Intervention
    start: int
    stop: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop:
            raise InvalidInputError(f"OnRows needs 0 <= start < stop, got [{self.start}, {self.stop})", field="start")

    @property
    def hook_name(self) -> str:
        return self.inner.hook_name

    def __call__(self, x: torch.Tensor, ctx: HookContext) -> torch.Tensor:
        if self.stop > x.shape[0]:
            raise ShapeMismatchError(f"OnRows [{self.start}, {self.stop}) on {self.hook_name!r}: the batch has "
                                     f"{x.shape[0]} rows")
        # one split (its backward is one concatenation) rather than three slices (each slice's
        # backward is a zero-filled copy of the whole batch's gradient)
        before, rows, after = torch.split(x, [self.start, self.stop - self.start, x.shape[0] - self.stop])
        return torch.cat([before, self.inner(rows, ctx), after], dim=0)
