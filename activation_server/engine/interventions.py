"""Turning the request's node interventions (ablate / patch a node) into inference interventions.

- MLP neuron → ``mlp.hook_post`` at (position, neuron)
- head, whole output at a query → ``attn.hook_z`` at (position, head)
- head, one (query, key) pair → ``attn.hook_pattern`` at (head, query, key), zeroed *without*
  renormalising, so exactly that pair's contribution is removed (TDB zeroed the whole query row)
- SAE latent → ``<sae>.hook_sae_acts_post``; SAE error → ``<sae>.hook_sae_error``
- token / position embedding → ``hook_embed`` / ``hook_pos_embed`` at the position

Mean ablation uses the node's mean over the engine's reference corpus; resample ablation takes the
node's value on a random reference row at the same position; patching copies the value from another
prompt of the request at the aligned position (from that prompt's run without interventions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mechscope.inference import MeanAblate, Patch, ResampleAblate, ZeroAblate
from mechscope.inference.interventions import Intervention

from ..errors import RequestError
from .prompts import PreparedPrompts
from ..schemas import NodeIntervention, NodeRef


def _node_hook(node: NodeRef) -> str:
    if node.kind == "mlp_neuron":
        return f"blocks.{node.layer}.mlp.hook_post"
    if node.kind == "attn_head":
        return (f"blocks.{node.layer}.attn.hook_z" if node.key_position is None
                else f"blocks.{node.layer}.attn.hook_pattern")
    if node.kind == "sae_latent":
        return f"{node.sae}.hook_sae_acts_post"
    if node.kind == "sae_error":
        return f"{node.sae}.hook_sae_error"
    return "hook_embed" if node.kind == "embedding" else "hook_pos_embed"


def validate_node(node: NodeRef, model, saes: dict, field: str) -> None:
    cfg = model.cfg
    if node.layer is not None and node.layer >= cfg.n_layers:
        raise RequestError(f"layer {node.layer} does not exist (the model has {cfg.n_layers})", field=f"{field}.layer")
    limit = {"mlp_neuron": cfg.d_mlp, "attn_head": cfg.n_heads}.get(node.kind)
    if node.kind in ("sae_latent", "sae_error"):
        if node.sae not in saes:
            raise RequestError(f"no SAE is loaded at {node.sae!r}; loaded: {sorted(saes)}", field=f"{field}.sae")
        if node.kind == "sae_latent":
            limit = saes[node.sae].n_latents
        if not node.sae.startswith(f"blocks.{node.layer}."):
            raise RequestError(f"SAE {node.sae!r} is not in layer {node.layer}", field=f"{field}.layer")
    if limit is not None and node.index >= limit:
        raise RequestError(f"{node.kind} index {node.index} is out of range (there are {limit})", field=f"{field}.index")


def _index_kwargs(node: NodeRef, pos: int, key_pos: int | None) -> dict:
    if node.kind == "attn_head":
        if key_pos is not None:
            return {"head": node.index, "query": pos, "key": key_pos}
        return {"head": node.index, "pos": pos}
    if node.kind in ("mlp_neuron", "sae_latent"):
        return {"pos": pos, "index": node.index}
    return {"pos": pos}


def compile_interventions(prepared: PreparedPrompts, per_prompt: Sequence[Sequence[NodeIntervention]], model,
                          saes: dict, reference: Callable[[str], torch.Tensor],
                          clean_source: Callable[[str], torch.Tensor]) -> list[Intervention]:
    """``reference(hook)`` gives activations on the reference corpus ``[rows, pos, ...]``;
    ``clean_source(hook)`` the activations of this request's prompts without interventions."""
    out: list[Intervention] = []
    for i, interventions in enumerate(per_prompt):
        for j, iv in enumerate(interventions):
            field = f"prompts[{i}].interventions[{j}]"
            node = iv.node
            validate_node(node, model, saes, f"{field}.node")
            pos = prepared.resolve_position(i, node.position, f"{field}.node.position")
            key_pos = None
            if node.key_position is not None:
                key_pos = prepared.resolve_position(i, node.key_position, f"{field}.node.key_position")
                if key_pos > pos:
                    raise RequestError(f"key position {key_pos} comes after query position {pos}",
                                       field=f"{field}.node.key_position")
            hook = _node_hook(node)
            sel = {"batch": i, **_index_kwargs(node, pos, key_pos)}
            if key_pos is not None and iv.mode != "zero":
                raise RequestError("a (query, key) pair of a head can only be zero-ablated; ablate or patch the "
                                   "head's whole output at the query (key_position=None) instead", field=f"{field}.mode")
            if iv.mode == "zero":
                out.append(ZeroAblate(hook, **sel))
            elif iv.mode == "mean":
                ref = reference(hook)
                if pos >= ref.shape[1]:
                    raise RequestError(f"position {pos} is beyond the reference corpus rows ({ref.shape[1]} tokens)",
                                       field=f"{field}.node.position")
                mean = ref[:, pos].mean(0)  # the node's mean at this position over the reference rows
                full = torch.zeros(prepared.tokens.shape[1], *mean.shape, dtype=mean.dtype)
                full[pos] = mean
                out.append(MeanAblate(hook, mean=full, **sel))
            elif iv.mode == "resample":
                ref = reference(hook)
                if pos >= ref.shape[1]:
                    raise RequestError(f"position {pos} is beyond the reference corpus rows ({ref.shape[1]} tokens)",
                                       field=f"{field}.node.position")
                width = prepared.tokens.shape[1]
                src = torch.zeros(ref.shape[0], width, *ref.shape[2:], dtype=ref.dtype)
                src[:, pos] = ref[:, pos]
                out.append(ResampleAblate(hook, source=src, seed=1000 * i + j, **sel))
            else:  # patch
                s = iv.source_prompt
                if s >= prepared.batch:
                    raise RequestError(f"source_prompt {s} does not exist ({prepared.batch} prompts)",
                                       field=f"{field}.source_prompt")
                src_pos = prepared.aligned_position(i, pos, s)
                if src_pos is None:
                    raise RequestError(f"position {pos} of prompt {i} has no aligned position in prompt {s}",
                                       field=f"{field}.node.position")
                values = clean_source(hook)[s]
                src = torch.zeros_like(values)
                if node.kind == "attn_head":
                    src[pos, node.index] = values[src_pos, node.index]
                else:
                    src[pos] = values[src_pos]
                out.append(Patch(hook, source=src[None], **sel))
    return out
