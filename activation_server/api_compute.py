"""Computations behind the HTTP-only endpoints (server info, tokenizer, generation with
interventions, a component's activations on given prompts), as plain functions of the engine."""

from __future__ import annotations

import re

import torch

from mechscope.inference import AddVector, ZeroAblate, gpt2_tokenizer

from .api_models import (Completion, ComponentRef, DetokenizeRequest, DetokenizeResult, GenerateRequest, GenerateResult,
                         GenerationIntervention, ModelInfo, NodeActivationsRequest, NodeActivationsResult,
                         PromptActivations, SaeInfo, TokenizeRequest, TokenizeResult)
from .errors import RequestError
from .node_interventions import validate_node
from .schemas import NodeRef

_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def model_info(model, shared: torch.Tensor | None = None) -> ModelInfo:
    """``shared``: :func:`~mechscope.inference.vocabulary.shared_unembedding_mask` of the model (the
    tokens without an embedding of their own); the others are listed as ``known_token_ids``."""
    cfg = model.cfg
    known = None if shared is None or not bool(shared.any()) else (~shared).nonzero().flatten().tolist()
    return ModelInfo(name=cfg.name, n_layer=cfg.n_layer, n_head=cfg.n_head, d_model=cfg.d_model, d_head=cfg.d_head,
                     d_mlp=cfg.d_mlp, n_ctx=cfg.n_positions, vocab_size=cfg.vocab_size,
                     activation_function=cfg.activation_function, known_token_ids=known)


def sae_info(point: str, sae) -> SaeInfo:
    cfg = sae.config
    match = _BLOCK.match(point)
    source = cfg.source.get("format") if isinstance(cfg.source, dict) else None
    return SaeInfo(hook_point=point, layer=int(match.group(1)) if match else None, d_in=cfg.d_in,
                   n_latents=cfg.n_latents, activation=cfg.activation, k=cfg.k,
                   input_normalization=cfg.input_normalization, source=source)


# --- tokenizer ---------------------------------------------------------------------------------------
def tokenize(request: TokenizeRequest) -> TokenizeResult:
    tok = gpt2_tokenizer()
    ids = tok.encode(request.text, prepend_bos=request.prepend_bos)
    return TokenizeResult(ids=ids, tokens=tok.token_strs(ids))


def detokenize(request: DetokenizeRequest) -> DetokenizeResult:
    tok = gpt2_tokenizer()
    for j, i in enumerate(request.ids):
        if not 0 <= i < tok.vocab_size:
            raise RequestError(f"token id {i} is outside the vocabulary [0, {tok.vocab_size})", field=f"ids[{j}]")
    return DetokenizeResult(text=tok.decode(request.ids), tokens=tok.token_strs(request.ids))


# --- components ------------------------------------------------------------------------------------
def _check_component(engine, component: ComponentRef, field: str) -> None:
    node = NodeRef(kind=component.kind, layer=component.layer, index=component.index, position=0, sae=component.sae)
    validate_node(node, engine.model, engine.saes, field)


# --- generation ------------------------------------------------------------------------------------
def generation_interventions(engine, interventions: list[GenerationIntervention]) -> tuple[list, list]:
    """(inference interventions, SAE splices they need) for a generation request."""
    out, splice_points = [], set()
    for j, iv in enumerate(interventions):
        c, field = iv.component, f"interventions[{j}]"
        _check_component(engine, c, f"{field}.component")
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
    interventions, splices = generation_interventions(engine, request.interventions)
    generation = engine.model.generate(request.prompts, max_new_tokens=request.max_new_tokens,
                                       temperature=request.temperature, top_p=request.top_p, seed=request.seed,
                                       prepend_bos=request.prepend_bos, interventions=interventions, splices=splices)
    tok = gpt2_tokenizer()
    return GenerateResult(completions=[
        Completion(prompt=p, text=text, token_ids=ids, tokens=tok.token_strs(ids))
        for p, text, ids in zip(request.prompts, generation.texts, generation.new_tokens)])


# --- node activations ------------------------------------------------------------------------------
@torch.no_grad()
def node_activations(engine, request: NodeActivationsRequest) -> NodeActivationsResult:
    """A component's activation on each token of each prompt (neurons: post-GELU value; latents:
    the SAE's latent value), or for a head the (query, key) matrix of its write norm
    ‖p_qk · v_k W_O‖ or of its attention probability."""
    c = request.component
    _check_component(engine, c, "component")
    model, tok = engine.model, gpt2_tokenizer()
    results, best = [], 0.0
    for ids in tok.encode_prompts(request.prompts, prepend_bos=request.prepend_bos):
        tokens = torch.tensor([ids])
        values = matrix = None
        if c.kind == "mlp_neuron":
            point = f"blocks.{c.layer}.mlp.hook_post"
            _, cache = model.run_with_cache(tokens, names=[point])
            values = cache[point][0, :, c.index].tolist()
        elif c.kind == "sae_latent":
            point = f"{c.sae}.hook_sae_acts_post"
            _, cache = model.run_with_cache(tokens, names=[point], splices=engine.splices([c.sae]))
            values = cache[point][0, :, c.index].tolist()
        else:
            pattern, v = f"blocks.{c.layer}.attn.hook_pattern", f"blocks.{c.layer}.attn.hook_v"
            _, cache = model.run_with_cache(tokens, names=[pattern, v])
            probs = cache[pattern][0, c.index]                                   # [query, key]
            if request.head_value == "write_norm":
                w_o = model.h[c.layer].attn.W_O[c.index]                         # [d_head, d_model]
                probs = probs * (cache[v][0, :, c.index] @ w_o).norm(dim=-1)[None, :]
            matrix = [row[:q + 1] for q, row in enumerate(probs.tolist())]
        flat = values if values is not None else [x for row in matrix for x in row]
        best = max(best, max(flat))
        results.append(PromptActivations(tokens=tok.token_strs(ids), token_ids=ids, values=values, matrix=matrix))
    return NodeActivationsResult(component=c, prompts=results, max_value=best)
