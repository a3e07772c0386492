"""Caching activations: store only the hook points asked for, optionally only some layers/positions."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping

import torch

from .errors import UnknownHookError
from .hooks import HookContext, hook_axes, layer_of

NameFilter = Iterable[str] | Callable[[str], bool] | str | None


class ActivationCache(Mapping[str, torch.Tensor]):
    """Read-only mapping from hook point name to the cached activation."""

    def __init__(self, store: dict[str, torch.Tensor]):
        self._store = store

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self._store[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._store), n=3)
            hint = f"; cached names close to it: {close}" if close else ""
            raise UnknownHookError(f"{name!r} is not in this cache{hint}", field="name") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._store.values())


def _select_names(model, names: NameFilter, layers: Iterable[int] | None, splices=()) -> list[str]:
    from .hooks import OPTIONAL_BLOCK_POINTS
    available = [*model.hook_names, *(n for s in splices for n in s.sub_hook_names())]
    if names is None:
        chosen = [n for n in available if not any(n.endswith(o) for o in OPTIONAL_BLOCK_POINTS)]
    elif isinstance(names, str):
        chosen = [names]
    elif callable(names):
        chosen = [n for n in available if names(n)]
    else:
        chosen = list(names)
    model.check_hook_names(chosen, splices)
    if layers is not None:
        keep = set(layers)
        chosen = [n for n in chosen if layer_of(n) is None or layer_of(n) in keep]
    return chosen


def _slice_positions(name: str, x: torch.Tensor, positions) -> torch.Tensor:
    if positions is None:
        return x
    axes = hook_axes(name)
    axis = axes.index("pos") if "pos" in axes else axes.index("query") if "query" in axes else None
    if axis is None:
        return x
    index = torch.arange(x.shape[axis])[positions] if isinstance(positions, slice) else \
        torch.as_tensor(positions, dtype=torch.long)
    return x.index_select(axis, index.to(x.device))


def caching_hooks(names: Iterable[str], store: dict[str, torch.Tensor], *, positions=None,
                  detach: bool = True, device: torch.device | str | None = None):
    """Forward hooks that copy each named activation into ``store`` (nothing else is kept)."""
    def save(x: torch.Tensor, ctx: HookContext) -> None:
        kept = _slice_positions(ctx.name, x, positions)
        kept = kept.detach() if detach else kept
        store[ctx.name] = kept.to(device) if device is not None else kept
    return [(n, save) for n in names]


def run_with_cache(model, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                   names: NameFilter = None, layers: Iterable[int] | None = None, positions=None,
                   detach: bool = True, device=None, fwd_hooks=None, **forward_kwargs
                   ) -> tuple[torch.Tensor, ActivationCache]:
    """Run the model and cache the activations at ``names`` (all standard hook points by default;
    a list, a single name, or a predicate on names), restricted to ``layers`` and ``positions``
    (a slice or index list along the pos — or, for attention patterns, the query — axis).
    Only what is asked is stored. Interventions and hooks passed along apply as usual; the cache
    sees activations after earlier hooks at the same point.
    """
    store: dict[str, torch.Tensor] = {}
    chosen = _select_names(model, names, layers, forward_kwargs.get("splices", ()))
    hooks = list(fwd_hooks.items() if isinstance(fwd_hooks, Mapping) else fwd_hooks or [])
    hooks += caching_hooks(chosen, store, positions=positions, detach=detach, device=device)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not detach):
        logits = model(tokens, attention_mask, fwd_hooks=hooks, **forward_kwargs)
    return logits, ActivationCache(store)
