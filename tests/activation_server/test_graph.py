"""Attribution graph edges recomputed by hand with plain autograd (an independent reference)."""

import pytest
import torch

from mechscope.activation_server.engine.graph import attribution_graph
from mechscope.activation_server.schemas import GraphRequest, LossSpec
from mechscope.inference import gpt2_tokenizer

from .conftest import IOI


def _hand_edge(model, tokens, u, v, mary, john):
    """act_u × ∂pre_v/∂act_u (LayerNorm scales and attention patterns frozen) × ∂loss/∂pre_v."""
    n = model.cfg.n_layers
    store = {}

    def keep(x, ctx):
        store[ctx.name] = x

    def freeze(x, ctx):
        return x.detach()

    frozen = [(f"blocks.{l}.{ln}.hook_scale", freeze) for l in range(n) for ln in ("ln1", "ln2")]
    frozen += [(f"blocks.{l}.attn.hook_pattern", freeze) for l in range(n)] + [("ln_final.hook_scale", freeze)]
    with torch.enable_grad():
        model(tokens, fwd_hooks=[("hook_embed", lambda x, c: x.detach().requires_grad_(True)), *frozen,
                                 (f"blocks.{u.layer}.mlp.hook_post", keep), (f"blocks.{v.layer}.mlp.hook_pre", keep)])
        pre_v = store[f"blocks.{v.layer}.mlp.hook_pre"][0, v.position, v.index]
        (g,) = torch.autograd.grad(pre_v, [store[f"blocks.{u.layer}.mlp.hook_post"]])
    store.clear()
    with torch.enable_grad():
        logits = model(tokens, fwd_hooks=[("hook_embed", lambda x, c: x.detach().requires_grad_(True)),
                                          ("ln_final.hook_scale", freeze), (f"blocks.{v.layer}.mlp.hook_pre", keep),
                                          (f"blocks.{u.layer}.mlp.hook_post", keep)])
        loss = logits[0, -1, mary] - logits[0, -1, john]
        (g_pre,) = torch.autograd.grad(loss, [store[f"blocks.{v.layer}.mlp.hook_pre"]])
    act_u = store[f"blocks.{u.layer}.mlp.hook_post"][0, u.position, u.index].detach()
    return float(act_u * g[0, u.position, u.index] * g_pre[0, v.position, v.index])


def test_neuron_to_neuron_edges_match_a_hand_computation(engine, small_model):
    tok = gpt2_tokenizer()
    graph = attribution_graph(engine, GraphRequest(prompt=IOI, loss=LossSpec(targets=[" Mary"], distractors=[" John"]),
                                                   max_nodes=40, max_edges=400, prepend_bos=False))
    nodes = {n.id: n for n in graph.nodes}
    pairs = [(nodes[e.source], nodes[e.target], e.weight) for e in graph.edges
             if e.target != "loss" and nodes[e.source].kind == nodes[e.target].kind == "mlp_neuron"]
    assert pairs, "expected neuron-to-neuron edges"
    tokens = torch.tensor([tok.encode(IOI)])
    mary, john = tok.encode(" Mary")[0], tok.encode(" John")[0]
    for u, v, weight in pairs[:4]:
        assert weight == pytest.approx(_hand_edge(small_model, tokens, u, v, mary, john), rel=1e-3, abs=1e-6)
    loss_edges = [e for e in graph.edges if e.target == "loss"]
    assert all(nodes[e.source].layer < small_model.cfg.n_layers for e in loss_edges)
