"""Per-head effect on the loss, estimated three ways, for one prompt:

- ``linear``: the node table's estimated total effect summed over a head's (query, key) pairs —
  one backward pass for all heads (attribution patching). Fast, but first order: it misjudges heads
  whose removal changes later attention or LayerNorm scales a lot (saturated softmax, cancellation).
- ``integrated_gradients``: for each head, the output ``z`` is scaled by α from 1 down to 0 and the
  gradient dL/dα is averaged over ``steps`` midpoints — a Riemann sum of the loss change along the
  path to zero ablation. All heads × steps run as rows of batched forward/backward passes.
- ``ablation``: the actual change of the loss when the head's output is zeroed at every position
  (batched, one row per head) — the ground truth the estimators are checked against.

Each is the head's *contribution*: loss(clean) − loss(head removed), to first order or exactly.
"""

from __future__ import annotations

import torch

from mechscope.inference import MaskedPatch

from .shared_passes import node_tensors
from .objective import loss_scalar
from ..schemas import AttributionRequest

ROWS_PER_PASS = 128


def linear_head_effects(engine, request: AttributionRequest) -> torch.Tensor:
    t = node_tensors(engine, request)
    return torch.stack([torch.nan_to_num(b.values["total_effect"][0]).sum((1, 2))
                        for b in t.groups if b.kind == "attn_head"])


def _setup(engine, request: AttributionRequest):
    from .prompts import prepare_prompts
    prepared = prepare_prompts(request.prompts[:1], engine.model.cfg.n_ctx)
    pos = prepared.resolve_position(0, request.loss.position, "loss.position")
    return prepared.tokens, loss_scalar(request.loss, torch.tensor(pos))[0]


@torch.no_grad()
def ablation_head_effects(engine, request: AttributionRequest) -> torch.Tensor:
    model = engine.model
    cfg = model.cfg
    tokens, loss = _setup(engine, request)
    clean = float(loss(model(tokens))[0])
    heads = [(l, h) for l in range(cfg.n_layers) for h in range(cfg.n_heads)]
    out = []
    for start in range(0, len(heads), ROWS_PER_PASS):
        chunk = heads[start:start + ROWS_PER_PASS]
        ivs = []
        for layer in sorted({l for l, _ in chunk}):
            mask = torch.zeros(len(chunk), tokens.shape[1], cfg.n_heads, 1, dtype=torch.bool)
            for row, (l, h) in enumerate(chunk):
                if l == layer:
                    mask[row, :, h] = True
            ivs.append(MaskedPatch(f"blocks.{layer}.attn.hook_z", mask=mask, source=torch.zeros(())))
        out.append(clean - loss(model(tokens.expand(len(chunk), -1), interventions=ivs)))
    return torch.cat(out).reshape(cfg.n_layers, cfg.n_heads)


def integrated_gradient_head_effects(engine, request: AttributionRequest, steps: int = 8) -> torch.Tensor:
    model = engine.model
    cfg = model.cfg
    tokens, loss = _setup(engine, request)
    alphas = (torch.arange(steps) + 0.5) / steps
    rows = [(l, h, a) for l in range(cfg.n_layers) for h in range(cfg.n_heads) for a in alphas.tolist()]
    total = torch.zeros(cfg.n_layers, cfg.n_heads)
    for start in range(0, len(rows), ROWS_PER_PASS):
        chunk = rows[start:start + ROWS_PER_PASS]
        scale = torch.ones(len(chunk), cfg.n_layers, cfg.n_heads, requires_grad=False)
        for r, (l, h, a) in enumerate(chunk):
            scale[r, l, h] = a
        scale.requires_grad_(True)

        def scaler(layer):
            return lambda z, ctx: z * scale[:, layer][:, None, :, None]

        with torch.enable_grad():
            logits = model(tokens.expand(len(chunk), -1),
                           fwd_hooks=[(f"blocks.{l}.attn.hook_z", scaler(l)) for l in range(cfg.n_layers)])
            (grad,) = torch.autograd.grad(loss(logits).sum(), [scale])
        for r, (l, h, a) in enumerate(chunk):
            total[l, h] += float(grad[r, l, h]) / steps  # dL/dα at α; Σ/steps ≈ L(1) − L(0)
    return total
