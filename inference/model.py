"""GPT-2 in plain PyTorch, with hook points at every named activation.

Parameter names and layouts follow Hugging Face's GPT-2 checkpoints (``wte``, ``wpe``, ``h.{i}.…``,
Conv1D weights stored ``[in, out]`` so a layer computes ``x @ W + b``), so a checkpoint's state dict
loads as is. The forward pass threads a per-call :class:`~.hooks.HookRunner` through the blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import GPT2Config
from .errors import EmptyPromptError, InvalidInputError, PromptTooLongError, TokenOutOfRangeError
from .hooks import HookRunner, Hooks, HookSpec, active_scope_hooks, model_hook_names, unknown_hook_error

KVCache = list[tuple[torch.Tensor, torch.Tensor]]


class Conv1D(nn.Module):
    """An affine map with GPT-2's weight layout: ``y = x @ weight + bias``, weight ``[n_in, n_out]``."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
        return flat.view(*x.shape[:-1], self.weight.shape[1])


class LayerNorm(nn.Module):
    """LayerNorm exposing its scale (``hook_scale``) and normalised input (``hook_normalized``)."""

    def __init__(self, d: int, eps: float, hook_prefix: str):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.eps = eps
        self.hook_prefix = hook_prefix

    def forward(self, x: torch.Tensor, run: HookRunner) -> torch.Tensor:
        scale_name, norm_name = f"{self.hook_prefix}.hook_scale", f"{self.hook_prefix}.hook_normalized"
        if not (run.wants(scale_name) or run.wants(norm_name)):
            return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
        centred = x - x.mean(-1, keepdim=True)
        scale = run(scale_name, (centred.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return run(norm_name, centred / scale) * self.weight + self.bias


def _activation_fn(name: str):
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    return F.gelu if name == "gelu" else F.relu


class Attention(nn.Module):
    def __init__(self, cfg: GPT2Config, layer: int):
        super().__init__()
        self.n_head, self.d_head, self.layer = cfg.n_heads, cfg.d_head, layer
        self.c_attn = Conv1D(cfg.d_model, 3 * cfg.d_model)
        self.c_proj = Conv1D(cfg.d_model, cfg.d_model)

    # Per-head views of the weights (no copies).
    @property
    def W_Q(self) -> torch.Tensor:  # [head, d_model, d_head]
        return self._split_qkv_weight(0)

    @property
    def W_K(self) -> torch.Tensor:
        return self._split_qkv_weight(1)

    @property
    def W_V(self) -> torch.Tensor:
        return self._split_qkv_weight(2)

    @property
    def W_O(self) -> torch.Tensor:  # [head, d_head, d_model]
        return self.c_proj.weight.view(self.n_head, self.d_head, -1)

    def _split_qkv_weight(self, which: int) -> torch.Tensor:
        d = self.c_attn.weight.shape[0]
        w = self.c_attn.weight[:, which * d:(which + 1) * d]
        return w.reshape(d, self.n_head, self.d_head).permute(1, 0, 2)

    def qkv_bias(self, which: int) -> torch.Tensor:  # [head, d_head]
        d = self.c_attn.weight.shape[0]
        return self.c_attn.bias[which * d:(which + 1) * d].view(self.n_head, self.d_head)

    def forward(self, x: torch.Tensor, ln: LayerNorm, resid: torch.Tensor, run: HookRunner,
                allowed: torch.Tensor | None, past: tuple[torch.Tensor, torch.Tensor] | None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x`` is ln1(resid) (ignored when split q/k/v inputs are hooked). ``allowed`` is a boolean
        ``[batch, 1, query, key]`` mask, or None for a plain causal mask."""
        p = f"blocks.{self.layer}"
        b, n = resid.shape[:2]
        if any(run.wants(f"{p}.hook_{w}_input") for w in "qkv"):
            q, k, v = (self._head_input_projection(resid, ln, run, i, w) for i, w in enumerate("qkv"))
        else:
            q, k, v = self.c_attn(x).view(b, n, 3, self.n_head, self.d_head).unbind(2)
        q, k, v = run(f"{p}.attn.hook_q", q), run(f"{p}.attn.hook_k", k), run(f"{p}.attn.hook_v", v)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=1), torch.cat([past[1], v], dim=1)
        present = (k, v)
        if run.wants(f"{p}.attn.hook_attn_scores") or run.wants(f"{p}.attn.hook_pattern"):
            scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.d_head)
            mask = allowed if allowed is not None else _causal(q.shape[1], k.shape[1], q.device)
            scores = run(f"{p}.attn.hook_attn_scores", scores.masked_fill(~mask, float("-inf")))
            pattern = run(f"{p}.attn.hook_pattern", _softmax_over_keys(scores))
            z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)
        else:
            z = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                attn_mask=allowed, is_causal=allowed is None and past is None and n > 1,
            ).transpose(1, 2)
        z = run(f"{p}.attn.hook_z", z)
        if run.wants(f"{p}.attn.hook_result"):
            result = run(f"{p}.attn.hook_result", torch.einsum("bqhd,hdm->bqhm", z, self.W_O))
            out = result.sum(2) + self.c_proj.bias
        else:
            out = self.c_proj(z.reshape(b, n, -1))
        return run(f"{p}.hook_attn_out", out), present

    def _head_input_projection(self, resid: torch.Tensor, ln: LayerNorm, run: HookRunner, which: int,
                               letter: str) -> torch.Tensor:
        """Per-head copy of the residual (``hook_{q,k,v}_input``), layer-normed and projected."""
        per_head = resid.unsqueeze(2).expand(-1, -1, self.n_head, -1)
        per_head = run(f"blocks.{self.layer}.hook_{letter}_input", per_head)
        normed = F.layer_norm(per_head, per_head.shape[-1:], ln.weight, ln.bias, ln.eps)
        w = self._split_qkv_weight(which)
        return torch.einsum("bphm,hmd->bphd", normed, w) + self.qkv_bias(which)


def _causal(n_q: int, n_k: int, device: torch.device) -> torch.Tensor:
    return torch.ones(n_q, n_k, dtype=torch.bool, device=device).tril(n_k - n_q)


def _attention_mask_and_positions(tokens: torch.Tensor, attention_mask: torch.Tensor | None, past_len: int
                                  ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(which keys each query may attend to, ``[batch, 1, pos, past + pos]`` or None for plain
    causal attention; each token's position id ``[batch, pos]``). With an attention mask (1 = real
    token, covering past and new tokens), padding is never attended to and positions count real
    tokens only, so a padded row gives exactly what it gives alone."""
    b, n = tokens.shape
    device = tokens.device
    if attention_mask is not None:
        if attention_mask.shape != (b, past_len + n):
            raise InvalidInputError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected "
                                    f"{(b, past_len + n)}", field="attention_mask")
        mask = attention_mask.to(torch.bool)
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)[:, past_len:]
        eye = torch.zeros(n, past_len + n, dtype=torch.bool, device=device)
        eye[:, past_len:] = torch.eye(n, dtype=torch.bool, device=device)
        return (_causal(n, past_len + n, device) & (mask[:, None, :] | eye))[:, None], positions
    positions = torch.arange(past_len, past_len + n, device=device).expand(b, n)
    allowed = _causal(n, past_len + n, device)[None, None].expand(b, 1, -1, -1) if past_len else None
    return allowed, positions


SHORT_SOFTMAX = 16   # the widest CPU vector of float32 (AVX-512)


def _softmax_over_keys(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last (key) dimension. On the CPU, torch's softmax over a last dimension
    shorter than a vector register is many times slower per element than over one of 16 (a prompt
    of the organism's length is that short; `scripts/bench/forward.py` measures it), so short rows
    are padded with -inf keys (weight exactly 0) to 16 first, and the padding is cut off again."""
    n = scores.shape[-1]
    if n >= SHORT_SOFTMAX or scores.device.type != "cpu":
        return scores.softmax(-1)
    padded = F.pad(scores, (0, SHORT_SOFTMAX - n), value=float("-inf"))
    return padded.softmax(-1)[..., :n].contiguous()


class MLP(nn.Module):
    def __init__(self, cfg: GPT2Config, layer: int):
        super().__init__()
        self.layer = layer
        self.c_fc = Conv1D(cfg.d_model, cfg.d_mlp)
        self.c_proj = Conv1D(cfg.d_mlp, cfg.d_model)
        self.act = _activation_fn(cfg.act_fn)

    def forward(self, x: torch.Tensor, run: HookRunner) -> torch.Tensor:
        p = f"blocks.{self.layer}"
        pre = run(f"{p}.mlp.hook_pre", self.c_fc(x))
        post = run(f"{p}.mlp.hook_post", self.act(pre))
        return run(f"{p}.hook_mlp_out", self.c_proj(post))


class Block(nn.Module):
    def __init__(self, cfg: GPT2Config, layer: int):
        super().__init__()
        self.layer = layer
        self.ln_1 = LayerNorm(cfg.d_model, cfg.eps, f"blocks.{layer}.ln1")
        self.attn = Attention(cfg, layer)
        self.ln_2 = LayerNorm(cfg.d_model, cfg.eps, f"blocks.{layer}.ln2")
        self.mlp = MLP(cfg, layer)

    def forward(self, resid: torch.Tensor, run: HookRunner, allowed: torch.Tensor | None,
                past: tuple[torch.Tensor, torch.Tensor] | None):
        p = f"blocks.{self.layer}"
        resid = run(f"{p}.hook_resid_pre", resid)
        attn_out, present = self.attn(self.ln_1(resid, run), self.ln_1, resid, run, allowed, past)
        resid = run(f"{p}.hook_resid_mid", resid + attn_out)
        resid = run(f"{p}.hook_resid_post", resid + self.mlp(self.ln_2(resid, run), run))
        return resid, present


class GPT2(nn.Module):
    """A GPT-2 language model with hook points (TransformerLens names) and per-call interventions."""

    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.d_vocab, cfg.d_model)
        self.wpe = nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.h = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.ln_f = LayerNorm(cfg.d_model, cfg.eps, "ln_final")
        self.hook_names = tuple(model_hook_names(cfg.n_layers))
        self._hook_name_set = frozenset(self.hook_names)
        self.init_weights()

    def init_weights(self, std: float = 0.02, seed: int | None = None) -> None:
        """GPT-2's initialisation (normal(0, 0.02), residual projections scaled by 1/sqrt(2·n_layer))."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif ".ln_" in name or name.startswith("ln_f"):
                    p.fill_(1.0)
                else:
                    scale = std / math.sqrt(2 * self.cfg.n_layers) if name.endswith("c_proj.weight") else std
                    p.copy_(torch.randn(p.shape, generator=gen) * scale)

    # --- validation -----------------------------------------------------------------------------
    def check_hook_names(self, names, splices: Sequence = ()) -> None:
        extra = {n for s in splices for n in s.sub_hook_names()}
        for name in names:
            if name not in self._hook_name_set and name not in extra:
                raise unknown_hook_error(name, [*self.hook_names, *sorted(extra)])

    def check_tokens(self, tokens: torch.Tensor, past_len: int = 0) -> None:
        if tokens.dim() != 2:
            raise InvalidInputError(f"tokens must be a [batch, pos] tensor, got shape {tuple(tokens.shape)}",
                                    field="tokens")
        if tokens.shape[1] == 0 or tokens.shape[0] == 0:
            raise EmptyPromptError("the prompt is empty: there are no tokens to run", field="tokens")
        if past_len + tokens.shape[1] > self.cfg.n_ctx:
            raise PromptTooLongError(f"{past_len + tokens.shape[1]} tokens exceed the model's context of "
                                     f"{self.cfg.n_ctx} (n_ctx)", field="tokens")
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= self.cfg.d_vocab:
            bad = hi if hi >= self.cfg.d_vocab else lo
            raise TokenOutOfRangeError(f"token id {bad} is outside the vocabulary [0, {self.cfg.d_vocab})",
                                       field="tokens")

    # --- forward --------------------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                hooks: Hooks | None = None, fwd_hooks: HookSpec = None, bwd_hooks: HookSpec = None,
                interventions: Sequence = (), splices: Sequence = (), past_kv: KVCache | None = None,
                return_kv: bool = False, stop_at_layer: int | None = None,
                start_at_layer: int | None = None, start_resid: torch.Tensor | None = None,
                logit_positions: torch.Tensor | None = None, return_final: bool = False):
        """Logits ``[batch, pos, vocab]`` for ``tokens`` ``[batch, pos]``.

        ``attention_mask`` (1 = real token, 0 = padding; covering past and new tokens when a KV
        cache is given) lets padded rows give exactly what they give alone, with left or right
        padding. ``interventions`` are objects from :mod:`.interventions`; ``fwd_hooks`` and
        ``bwd_hooks`` map hook names to functions. ``splices`` are modules spliced in at a hook point
        (e.g. :class:`mechscope.autoencoders.SAESplice`), run before every other hook there; their own
        hook points (``<point>.hook_sae_acts_post`` ...) accept hooks and interventions like any other.
        With ``stop_at_layer=L`` the residual stream entering block L is returned instead of logits
        (``L = n_layer``: the final residual, before ``ln_final``). With ``start_at_layer=L`` and
        ``start_resid`` (the residual entering block L, e.g. from a cache) the blocks before L are
        skipped; ``tokens`` then only give the batch shape and positions. With ``logit_positions``
        (``[batch]`` positions) only those positions are unembedded: logits ``[batch, 1, vocab]``,
        much cheaper (forward and backward) when only one prediction per row is needed. With
        ``return_final`` the output of ``ln_final`` (at ``logit_positions`` if given) is returned
        instead of logits, for callers that unembed it themselves (e.g. only a few columns).
        """
        past_len = past_kv[0][0].shape[1] if past_kv else 0
        self.check_tokens(tokens, past_len)
        if tokens.device != (device := self.wte.weight.device):   # callers build token batches on the CPU
            tokens = tokens.to(device)
            attention_mask = attention_mask.to(device) if attention_mask is not None else None
        run = HookRunner(self._call_hooks(hooks, fwd_hooks, bwd_hooks, interventions, splices), pos_offset=past_len)

        b, n = tokens.shape
        allowed, positions = _attention_mask_and_positions(tokens, attention_mask, past_len)
        first = start_at_layer or 0
        if start_at_layer is not None:
            if start_resid is None or start_resid.shape[:2] != tokens.shape:
                raise InvalidInputError("start_at_layer needs start_resid of shape [batch, pos, d_model] matching "
                                        "tokens", field="start_resid")
            resid = start_resid
        else:
            resid = run("hook_embed", self.wte(tokens)) + run("hook_pos_embed", self.wpe(positions))
        presents: KVCache = []
        for i in range(first, self.cfg.n_layers):
            if stop_at_layer is not None and i == stop_at_layer:
                return resid
            resid, present = self.h[i](resid, run, allowed, past_kv[i] if past_kv else None)
            presents.append(present)
        if stop_at_layer == self.cfg.n_layers:
            return resid
        final = self.ln_f(resid, run)
        if logit_positions is not None:
            if logit_positions.shape != (b,):
                raise InvalidInputError(f"logit_positions has shape {tuple(logit_positions.shape)}, expected ({b},)",
                                        field="logit_positions")
            final = final[torch.arange(b, device=final.device), logit_positions.to(final.device)][:, None]
        if return_final:
            return (final, presents) if return_kv else final
        logits = self.unembed(final)
        return (logits, presents) if return_kv else logits

    def _call_hooks(self, hooks: Hooks | None, fwd_hooks: HookSpec, bwd_hooks: HookSpec, interventions: Sequence,
                    splices: Sequence) -> Hooks:
        """Every hook of one call, checked against the model's hook points. Order at each point:
        splices, scoped hooks, ``hooks``, interventions, then fwd_hooks (so a cache sees the
        intervened value)."""
        all_hooks = Hooks.build([(s.hook_point, s) for s in splices]).merged(active_scope_hooks())
        all_hooks = all_hooks.merged(hooks or Hooks())
        if interventions:
            all_hooks = all_hooks.merged(Hooks.build([(iv.hook_name, iv) for iv in interventions]))
        all_hooks = all_hooks.merged(Hooks.build(fwd_hooks, bwd_hooks))
        self.check_hook_names(all_hooks.names(), splices)
        return all_hooks

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.wte.weight.T

    def final_norm(self, resid: torch.Tensor) -> torch.Tensor:
        """``ln_final`` applied to a residual stream outside a forward pass (no hooks)."""
        return F.layer_norm(resid, resid.shape[-1:], self.ln_f.weight, self.ln_f.bias, self.ln_f.eps)

    # --- conveniences ---------------------------------------------------------------------------
    @property
    def W_U(self) -> torch.Tensor:  # [d_model, vocab]
        return self.wte.weight.T

    @property
    def blocks(self) -> nn.ModuleList:
        return self.h

    def run_with_cache(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        """See :func:`mechscope.inference.cache.run_with_cache`."""
        from .cache import run_with_cache
        return run_with_cache(self, tokens, attention_mask, **kwargs)

    def generate(self, tokens_or_prompts, **kwargs):
        """See :func:`mechscope.inference.generation.generate`."""
        from .generation import generate
        return generate(self, tokens_or_prompts, **kwargs)
