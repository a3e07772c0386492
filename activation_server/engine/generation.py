"""Generation with interventions: continue prompts with components zeroed, or steered by adding a
multiple of a neuron's or latent's write direction, at every position (KV-cached, batched)."""

from __future__ import annotations

import torch

from mechscope.inference import AddVector, ZeroAblate, gpt2_tokenizer

from ..errors import RequestError
from ..schemas import NodeRef
from ..server_schemas import Completion, ComponentRef, GenerateRequest, GenerateResult, GenerationIntervention
from .interventions import validate_node


# --- components ------------------------------------------------------------------------------------
def check_component(engine, component: ComponentRef, field: str) -> None:
    node = NodeRef(kind=component.kind, layer=component.layer, index=component.index, position=0, sae=component.sae)
    validate_node(node, engine.model, engine.saes, field)


# --- generation ------------------------------------------------------------------------------------
def _generation_interventions(engine, interventions: list[GenerationIntervention]) -> tuple[list, list]:
    """(inference interventions, SAE splices they need) for a generation request."""
    out, splice_points = [], set()
    for j, iv in enumerate(interventions):
        c, field = iv.component, f"interventions[{j}]"
        check_component(engine, c, f"{field}.component")
        at = {} if iv.positions is None else {"pos": sorted(set(iv.positions))}
        if iv.action == "zero":
            if c.kind == "mlp_neuron":
                out.append(ZeroAblate(f"blocks.{c.layer}.mlp.hook_post", index=c.index, **at))
            elif c.kind == "attn_head":
                out.append(ZeroAblate(f"blocks.{c.layer}.attn.hook_z", head=c.index, **at))
            else:
                out.append(ZeroAblate(f"{c.sae}.hook_sae_acts_post", index=c.index, **at))
                splice_points.add(c.sae)
        else:
            if c.kind == "attn_head":
                raise RequestError("heads cannot be steered (their write depends on what they attend to); "
                                   "steer a neuron or an SAE latent, or zero the head", field=f"{field}.action")
            if c.kind == "mlp_neuron":
                out.append(AddVector(f"blocks.{c.layer}.mlp.hook_post", vector=torch.tensor(1.0), scale=iv.scale,
                                     index=c.index, **at))
            else:
                direction = engine.saes[c.sae].W_dec[c.index].detach()
                out.append(AddVector(c.sae, vector=direction, scale=iv.scale, **at))
    return out, engine.splices(sorted(splice_points))


def _check_positions(request: GenerateRequest) -> None:
    """Chosen positions must lie inside every prompt (they name prompt tokens)."""
    if all(iv.positions is None for iv in request.interventions):
        return
    shortest = min(len(ids) for ids in gpt2_tokenizer().encode_prompts(request.prompts, prepend_bos=request.prepend_bos))
    for j, iv in enumerate(request.interventions):
        for p in iv.positions or []:
            if p >= shortest:
                raise RequestError(f"position {p} is beyond the prompt ({shortest} tokens)",
                                   field=f"interventions[{j}].positions")


def generate(engine, request: GenerateRequest) -> GenerateResult:
    _check_positions(request)
    interventions, splices = _generation_interventions(engine, request.interventions)
    generation = engine.model.generate(request.prompts, max_new_tokens=request.max_new_tokens,
                                       temperature=request.temperature, top_p=request.top_p, seed=request.seed,
                                       prepend_bos=request.prepend_bos, interventions=interventions, splices=splices)
    tok = gpt2_tokenizer()
    return GenerateResult(completions=[
        Completion(prompt=p, text=text, token_ids=ids, tokens=tok.token_strs(ids))
        for p, text, ids in zip(request.prompts, generation.texts, generation.new_tokens)])
