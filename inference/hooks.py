"""Hook points: named places in the forward pass where activations can be read, edited or have
their gradients read.

Hooks are given per call — as an argument of the forward pass or through the :func:`hooks_scope`
context manager (a :mod:`contextvars` variable, so each thread / asyncio task sees only its own).
Nothing is ever registered on the model object, so two threads running different interventions on
one model cannot interfere.

A forward hook is ``fn(activation, ctx) -> Tensor | None``: returning a tensor replaces the
activation. A backward hook is ``fn(grad, ctx) -> Tensor | None`` and sees the gradient of the
activation (it may replace it too).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Union

import torch

from .errors import ShapeMismatchError, UnknownHookError

HookFn = Callable[[torch.Tensor, "HookContext"], Union[torch.Tensor, None]]
HookSpec = Union[Mapping[str, Union[HookFn, Sequence[HookFn]]], Iterable[tuple[str, HookFn]], None]


@dataclasses.dataclass(frozen=True)
class HookContext:
    """What a hook function learns about where it is called."""

    name: str
    layer: int | None
    pos_offset: int = 0  # absolute position of index 0 along the pos axis (non-zero with a KV cache)
    # The call's hook runner: ``ctx.run(name, tensor)`` applies the call's hooks at a further point
    # (used by spliced modules such as SAEs to expose their own hook points).
    run: "HookRunner | None" = dataclasses.field(default=None, repr=False, compare=False)


@typing.runtime_checkable
class Splice(typing.Protocol):
    """A module spliced into the forward pass at ``hook_point`` (e.g. an SAE with its error term).

    It is called like a forward hook, before any other hook at that point, and exposes the extra
    hook points listed by :meth:`sub_hook_names` through ``ctx.run``."""

    hook_point: str

    def sub_hook_names(self) -> list[str]: ...

    def __call__(self, x: torch.Tensor, ctx: HookContext) -> torch.Tensor: ...


# Axis names of the tensor at each hook point (batch first). Keys are name suffixes after the layer.
_GLOBAL_AXES = {
    "hook_embed": ("batch", "pos", "d_model"),
    "hook_pos_embed": ("batch", "pos", "d_model"),
    "ln_final.hook_scale": ("batch", "pos", "one"),
    "ln_final.hook_normalized": ("batch", "pos", "d_model"),
}
_BLOCK_AXES = {
    "hook_resid_pre": ("batch", "pos", "d_model"),
    "ln1.hook_scale": ("batch", "pos", "one"),
    "ln1.hook_normalized": ("batch", "pos", "d_model"),
    "hook_q_input": ("batch", "pos", "head", "d_model"),
    "hook_k_input": ("batch", "pos", "head", "d_model"),
    "hook_v_input": ("batch", "pos", "head", "d_model"),
    "attn.hook_q": ("batch", "pos", "head", "d_head"),
    "attn.hook_k": ("batch", "pos", "head", "d_head"),
    "attn.hook_v": ("batch", "pos", "head", "d_head"),
    "attn.hook_attn_scores": ("batch", "head", "query", "key"),
    "attn.hook_pattern": ("batch", "head", "query", "key"),
    "attn.hook_z": ("batch", "pos", "head", "d_head"),
    "attn.hook_result": ("batch", "pos", "head", "d_model"),
    "hook_attn_out": ("batch", "pos", "d_model"),
    "hook_resid_mid": ("batch", "pos", "d_model"),
    "ln2.hook_scale": ("batch", "pos", "one"),
    "ln2.hook_normalized": ("batch", "pos", "d_model"),
    "mlp.hook_pre": ("batch", "pos", "d_mlp"),
    "mlp.hook_post": ("batch", "pos", "d_mlp"),
    "hook_mlp_out": ("batch", "pos", "d_model"),
    "hook_resid_post": ("batch", "pos", "d_model"),
}
# Hook points that cost extra work and are computed only when something asks for them.
OPTIONAL_BLOCK_POINTS = ("hook_q_input", "hook_k_input", "hook_v_input", "attn.hook_result")
_BLOCK_NAME = re.compile(r"^blocks\.(\d+)\.(.+)$")


def model_hook_names(n_layer: int) -> list[str]:
    """Every hook point of a GPT-2 with ``n_layer`` blocks, in forward order."""
    names = ["hook_embed", "hook_pos_embed"]
    for layer in range(n_layer):
        names += [f"blocks.{layer}.{suffix}" for suffix in _BLOCK_AXES]
    return names + ["ln_final.hook_scale", "ln_final.hook_normalized"]


def layer_of(name: str) -> int | None:
    m = _BLOCK_NAME.match(name)
    return int(m.group(1)) if m else None


def hook_axes(name: str) -> tuple[str, ...]:
    """Axis names of the activation at hook point ``name`` (model points and spliced SAE points)."""
    if name in _GLOBAL_AXES:
        return _GLOBAL_AXES[name]
    m = _BLOCK_NAME.match(name)
    if m and m.group(2) in _BLOCK_AXES:
        return _BLOCK_AXES[m.group(2)]
    if ".hook_sae_" in name:  # points added by a spliced SAE: latents or error / reconstruction
        base, _, kind = name.rpartition(".hook_sae_")
        if kind in ("acts_pre", "acts_post"):
            return hook_axes(base)[:-1] + ("latent",)
        return hook_axes(base)
    raise UnknownHookError(f"unknown hook point {name!r}")


def unknown_hook_error(name: str, known: Sequence[str]) -> UnknownHookError:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return UnknownHookError(f"unknown hook point {name!r}{hint}", field="hook")


def _normalise(spec: HookSpec) -> dict[str, list[HookFn]]:
    out: dict[str, list[HookFn]] = {}
    if spec is None:
        return out
    items = spec.items() if isinstance(spec, Mapping) else spec
    for name, fns in items:
        fns = [fns] if callable(fns) else list(fns)
        out.setdefault(name, []).extend(fns)
    return out


@dataclasses.dataclass
class Hooks:
    """Forward and backward hooks for one call, keyed by hook point name."""

    forward: dict[str, list[HookFn]] = dataclasses.field(default_factory=dict)
    backward: dict[str, list[HookFn]] = dataclasses.field(default_factory=dict)

    @classmethod
    def build(cls, forward: HookSpec = None, backward: HookSpec = None) -> "Hooks":
        return cls(_normalise(forward), _normalise(backward))

    def merged(self, other: "Hooks") -> "Hooks":
        fwd = {k: list(v) for k, v in self.forward.items()}
        bwd = {k: list(v) for k, v in self.backward.items()}
        for k, v in other.forward.items():
            fwd.setdefault(k, []).extend(v)
        for k, v in other.backward.items():
            bwd.setdefault(k, []).extend(v)
        return Hooks(fwd, bwd)

    def names(self) -> set[str]:
        return set(self.forward) | set(self.backward)

    def __bool__(self) -> bool:
        return bool(self.forward or self.backward)


_ACTIVE_HOOKS: contextvars.ContextVar[Hooks] = contextvars.ContextVar("mechscope_active_hooks", default=Hooks())


@contextlib.contextmanager
def hooks_scope(forward: HookSpec = None, backward: HookSpec = None) -> Iterator[Hooks]:
    """Make hooks active for every forward pass run inside the ``with`` block, in this thread or
    task only. Scopes nest: inner hooks run after outer ones."""
    hooks = _ACTIVE_HOOKS.get().merged(Hooks.build(forward, backward))
    token = _ACTIVE_HOOKS.set(hooks)
    try:
        yield hooks
    finally:
        _ACTIVE_HOOKS.reset(token)


def active_scope_hooks() -> Hooks:
    return _ACTIVE_HOOKS.get()


class HookRunner:
    """Applies one call's hooks at each hook point. Created per forward pass, never stored."""

    __slots__ = ("hooks", "pos_offset", "_names")

    def __init__(self, hooks: Hooks, pos_offset: int = 0):
        self.hooks = hooks
        self.pos_offset = pos_offset
        self._names = hooks.names()

    def wants(self, name: str) -> bool:
        return name in self._names

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name not in self._names:
            return x
        ctx = HookContext(name, layer_of(name), self.pos_offset, self)
        for fn in self.hooks.forward.get(name, ()):
            out = fn(x, ctx)
            if out is not None:
                if out.shape != x.shape:
                    raise ShapeMismatchError(f"hook on {name!r} returned shape {tuple(out.shape)}, "
                                             f"expected {tuple(x.shape)}", field="hook")
                x = out
        for fn in self.hooks.backward.get(name, ()):
            if x.requires_grad:
                x.register_hook(lambda g, fn=fn, ctx=ctx: fn(g, ctx))
        return x
