"""Activation patching: batched sweeps over components and positions, and exact path patching.

Sweeps put one patched run per batch row (each row its own ``Patch`` intervention), in chunks, so
a whole layer × head grid costs a few batched forwards instead of one forward per cell.
"""

from __future__ import annotations

import torch

from mechscope.inference import MaskedPatch, Patch, gpt2_tokenizer

from ..errors import RequestError
from .objective import loss_scalar
from .prompts import check_loss, prepare_prompts
from ..schemas import (LossSpec, PathPatchingRequest, PathPatchingResult, PatchingSweepRequest, PatchingSweepResult,
                      PromptSpec)

CHUNK_ROWS = 64


def _loss_fn(model, loss: LossSpec, prepared):
    """Loss of each row of a batch of copies of one prompt (a real run: no frozen LayerNorm)."""
    pos = prepared.resolve_position(0, loss.position, "loss.position")
    return loss_scalar(loss, torch.tensor(pos))[0]


def _pair(model, clean: str, corrupted: str, loss: LossSpec, prepend_bos: bool):
    prepared = prepare_prompts([PromptSpec(text=clean, prepend_bos=prepend_bos),
                                PromptSpec(text=corrupted, prepend_bos=prepend_bos)], model.cfg.n_ctx)
    if prepared.lengths[0] != prepared.lengths[1]:
        raise RequestError(f"clean and corrupted prompts must have the same number of tokens "
                           f"({prepared.lengths[0]} vs {prepared.lengths[1]})", field="corrupted")
    if loss.kind == "kl":
        raise RequestError("patching measures logit_diff or log_prob losses", field="loss.kind")
    check_loss(loss, 2)
    clean_p = prepare_prompts([PromptSpec(text=clean, prepend_bos=prepend_bos)], model.cfg.n_ctx)
    return prepared, clean_p


def _nones(nested):
    return [_nones(x) for x in nested] if isinstance(nested, list) else None


SWEEP_HOOKS = {"heads": "attn.hook_z", "heads_by_position": "attn.hook_z", "resid_pre": "hook_resid_pre",
               "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out"}


@torch.no_grad()
def patching_sweep(model, request: PatchingSweepRequest) -> PatchingSweepResult:
    prepared, clean_p = _pair(model, request.clean, request.corrupted, request.loss, request.prepend_bos)
    loss_fn = _loss_fn(model, request.loss, clean_p)
    loss_pos = clean_p.resolve_position(0, request.loss.position, "loss.position")
    loss_at_first = loss_scalar(request.loss, torch.tensor(0))[0]  # logits of the loss position only
    cfg = model.cfg
    n_pos = prepared.lengths[0]
    suffix = SWEEP_HOOKS[request.kind]
    names = [f"blocks.{layer}.{suffix}" for layer in range(cfg.n_layers)]
    starts = [f"blocks.{layer}.hook_resid_pre" for layer in range(cfg.n_layers)]
    logits, cache = model.run_with_cache(prepared.tokens, names=sorted(set(names + starts)))
    clean_loss, corrupted_loss = (float(x) for x in loss_fn(logits))
    if request.kind == "heads":
        cells = [(layer, {"head": h}) for layer in range(cfg.n_layers) for h in range(cfg.n_heads)]
        shape, axes = (cfg.n_layers, cfg.n_heads), ["layer", "head"]
    elif request.kind == "heads_by_position":
        cells = [(layer, {"head": h, "pos": p}) for layer in range(cfg.n_layers) for h in range(cfg.n_heads)
                 for p in range(n_pos)]
        shape, axes = (cfg.n_layers, cfg.n_heads, n_pos), ["layer", "head", "position"]
    else:
        cells = [(layer, {"pos": p}) for layer in range(cfg.n_layers) for p in range(n_pos)]
        shape, axes = (cfg.n_layers, n_pos), ["layer", "position"]
    corrupted_tokens = prepared.tokens[1:2]
    losses = []
    # Rows patched at layer L share the corrupted run up to L: start them there, from the cached
    # residual, and unembed only the loss position.
    for layer in range(cfg.n_layers):
        layer_cells = [sel for l, sel in cells if l == layer]
        act = cache[names[layer]]
        for start in range(0, len(layer_cells), CHUNK_ROWS):
            chunk = layer_cells[start:start + CHUNK_ROWS]
            mask = torch.zeros((len(chunk), *act.shape[1:]), dtype=torch.bool)
            for row, sel in enumerate(chunk):  # one patched cell per row
                mask[(row, sel.get("pos", slice(None))) + ((sel["head"],) if "head" in sel else ())] = True
            rows = len(chunk)
            final = model(corrupted_tokens.expand(rows, -1), start_at_layer=layer,
                          start_resid=cache[starts[layer]][1:2].expand(rows, -1, -1), stop_at_layer=cfg.n_layers,
                          interventions=[MaskedPatch(names[layer], mask=mask, source=act[0:1])])
            at_loss = final[:, loss_pos:loss_pos + 1]
            losses.append(loss_at_first(model.unembed(model.final_norm(at_loss))))
    raw = torch.cat(losses).reshape(shape)
    denom = clean_loss - corrupted_loss
    norm = ((raw - corrupted_loss) / denom).tolist() if abs(denom) > 1e-9 else _nones(raw.tolist())
    return PatchingSweepResult(kind=request.kind, axes=axes, values=norm, raw_loss=raw.tolist(),
                               clean_loss=clean_loss, corrupted_loss=corrupted_loss,
                               tokens=gpt2_tokenizer().token_strs(prepared.token_ids[0]))


@torch.no_grad()
def path_patching(model, request: PathPatchingRequest) -> PathPatchingResult:
    cfg = model.cfg
    for name, heads in (("senders", request.senders), ("receivers", request.receivers)):
        for i, (layer, head) in enumerate(heads):
            if layer >= cfg.n_layers or head >= cfg.n_heads:
                raise RequestError(f"head ({layer}, {head}) does not exist", field=f"{name}[{i}]")
    if request.receivers and min(l for l, _ in request.receivers) <= min(l for l, _ in request.senders):
        raise RequestError("every receiver must come after the earliest sender", field="receivers")
    prepared, clean_p = _pair(model, request.clean, request.corrupted, request.loss, request.prepend_bos)
    loss_fn = _loss_fn(model, request.loss, clean_p)
    z_names = [f"blocks.{layer}.attn.hook_z" for layer in range(cfg.n_layers)]
    logits, cache = model.run_with_cache(prepared.tokens, names=z_names)
    clean_loss, corrupted_loss = (float(x) for x in loss_fn(logits))
    clean_tokens = prepared.tokens[0:1]
    senders = set(map(tuple, request.senders))

    # 1. Senders take their corrupted output; every other head is frozen to its clean output.
    frozen = []
    for layer in range(cfg.n_layers):
        z_clean, z_corr = cache[z_names[layer]][0:1], cache[z_names[layer]][1:2]
        mixed = z_clean.clone()
        for (l, h) in senders:
            if l == layer:
                mixed[:, :, h] = z_corr[:, :, h]
        frozen.append(Patch(z_names[layer], source=mixed))
    if not request.receivers:  # senders straight to the logits: nothing downstream recomputed
        patched = float(loss_fn(model(clean_tokens, interventions=frozen))[0])
    else:
        # 2. Recompute the receivers' inputs under that run (MLPs recompute; heads stay frozen).
        input_names = {f"blocks.{l}.hook_{w}_input" for l, _ in request.receivers for w in request.receiver_inputs}
        _, inputs = model.run_with_cache(clean_tokens, names=sorted(input_names), interventions=frozen)
        # 3. Clean run with only the receivers' chosen inputs patched.
        patches = [Patch(f"blocks.{l}.hook_{w}_input", head=h, source=inputs[f"blocks.{l}.hook_{w}_input"])
                   for l, h in request.receivers for w in request.receiver_inputs]
        patched = float(loss_fn(model(clean_tokens, interventions=patches))[0])
    denom = corrupted_loss - clean_loss
    return PathPatchingResult(clean_loss=clean_loss, corrupted_loss=corrupted_loss, patched_loss=patched,
                              restored_fraction=(patched - clean_loss) / denom if abs(denom) > 1e-9 else None)
