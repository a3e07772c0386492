"""The node table checked against closed-form identities, finite differences and serial runs."""

import pytest
import torch

from mechscope.activation_server.engine.shared_passes import node_tensors
from mechscope.activation_server.errors import RequestError
from mechscope.activation_server.schemas import (AttributionRequest, LossSpec, NodeIntervention, NodeRef, PromptSpec,
                                                 TraceSpec)
from mechscope.inference import Patch, SetActivation, ZeroAblate

from .conftest import IOI

LOSS = LossSpec(targets=[" Mary"], distractors=[" John"])


def _request(*prompts, **kw):
    return AttributionRequest(prompts=[p if isinstance(p, PromptSpec) else PromptSpec(text=p, prepend_bos=False)
                                       for p in prompts],
                              loss=kw.pop("loss", LOSS), **kw)


def _closure(t):
    return [float(sum(torch.nansum(b.values["direct_effect"][i]) for b in t.groups) + t.bias_direct[i])
            for i in range(t.prepared.batch)]


@pytest.mark.parametrize("mlp,attention", [("neurons", "heads"), ("latents", "latents"), ("latents", "heads")])
def test_direct_effects_sum_to_the_logit_difference(engine, mlp, attention):
    t = node_tensors(engine, _request(IOI, "When Mary and John went, John gave a drink to",
                                              mlp=mlp, attention=attention))
    for total, loss in zip(_closure(t), t.scalars.tolist()):
        assert abs(total - loss) <= 1e-4


def test_closure_on_gpt2_small_shape(gpt2_small_shape_checkpoint):
    from mechscope.activation_server.engine.engine import Engine
    from mechscope.inference import load_model
    eng = Engine(load_model(gpt2_small_shape_checkpoint[1]), reference_tokens=torch.zeros(1, 4, dtype=torch.long))
    t = node_tensors(eng, _request(IOI))
    assert abs(_closure(t)[0] - float(t.scalars[0])) <= 1e-4


def test_logit_difference_is_the_real_one(engine, small_model):
    t = node_tensors(engine, _request(IOI))
    from mechscope.inference import gpt2_tokenizer
    tok = gpt2_tokenizer()
    logits = small_model(torch.tensor([tok.encode(IOI)]))[0, -1]
    assert abs(float(t.scalars[0]) - float(logits[tok.encode(" Mary")[0]] - logits[tok.encode(" John")[0]])) < 1e-5


def _frozen_loss(model, tokens, scale, interventions):
    """Logit diff with the final LayerNorm scale patched to its clean value (the engine's loss)."""
    from mechscope.inference import gpt2_tokenizer
    tok = gpt2_tokenizer()
    logits = model(tokens, interventions=[Patch("ln_final.hook_scale", source=scale), *interventions])[0, -1]
    return float(logits[tok.encode(" Mary")[0]] - logits[tok.encode(" John")[0]])


def test_total_effects_match_finite_differences(engine, small_model):
    """The frozen-scale convention (live: tests/activation_server/test_total_effect_estimates.py)."""
    from mechscope.inference import gpt2_tokenizer
    t = node_tensors(engine, _request(IOI, total_effect_ln="frozen"))
    tokens = torch.tensor([gpt2_tokenizer().encode(IOI)])
    _, cache = small_model.run_with_cache(tokens, names=["ln_final.hook_scale", "blocks.1.mlp.hook_post",
                                                         "blocks.0.attn.hook_pattern"])
    scale = cache["ln_final.hook_scale"]
    eps = 1e-2
    neurons = next(b for b in t.groups if b.kind == "mlp_neuron" and b.layer == 1)
    for pos, n in [(13, 5), (13, 77), (9, 200)]:
        a = float(cache["blocks.1.mlp.hook_post"][0, pos, n])
        up = _frozen_loss(small_model, tokens, scale, [SetActivation("blocks.1.mlp.hook_post", pos=pos, index=n, value=a + eps)])
        down = _frozen_loss(small_model, tokens, scale, [SetActivation("blocks.1.mlp.hook_post", pos=pos, index=n, value=a - eps)])
        fd = (up - down) / (2 * eps)
        assert neurons.values["total_effect"][0, pos, n].item() == pytest.approx(a * fd, abs=2e-5, rel=1e-3)
    # a head's (query, key) pair: total effect = p * dL/dp with the pattern entry scaled
    heads = next(b for b in t.groups if b.kind == "attn_head" and b.layer == 0)
    p = cache["blocks.0.attn.hook_pattern"]
    h, q, k = 2, 13, 4
    scaled = [p.clone(), p.clone()]
    scaled[0][0, h, q, k] *= 1 + eps
    scaled[1][0, h, q, k] *= 1 - eps
    up, down = (_frozen_loss(small_model, tokens, scale, [Patch("blocks.0.attn.hook_pattern", source=s)]) for s in scaled)
    assert heads.values["total_effect"][0, h, q, k].item() == pytest.approx((up - down) / (2 * eps), abs=2e-5, rel=1e-3)


def test_batched_prompts_with_different_interventions_equal_serial_runs(engine):
    node = NodeRef(kind="mlp_neuron", layer=1, index=3, position=-1)
    prompts = [
        PromptSpec(text=IOI),
        PromptSpec(text="When Mary and John went, John gave it to", interventions=[NodeIntervention(node=node)]),
        PromptSpec(text=IOI, interventions=[NodeIntervention(node=NodeRef(kind="attn_head", layer=2, index=1, position=-1), mode="mean")]),
        PromptSpec(text="Then Mary and John had a long argument, and John said to",
                   interventions=[NodeIntervention(node=NodeRef(kind="attn_head", layer=0, index=0, position=-1, key_position=2))]),
    ]
    batched = engine.attribute(AttributionRequest(prompts=prompts, loss=LOSS, top_k=5))
    for i, p in enumerate(prompts):
        alone = engine.attribute(AttributionRequest(prompts=[p], loss=LOSS, top_k=5))
        assert batched.prompts[i].loss == pytest.approx(alone.prompts[0].loss, abs=1e-5)
        values = {r.key: r.values[0] for r in alone.nodes}
        for row in batched.nodes:
            mine = row.values[i]
            if row.positions[i] is None or mine is None:
                continue
            # a row's key uses slots aligned from the end; compare by recomputing the same key alone
            key = row.key
            if key in values and values[key] is not None:
                assert mine.total_effect == pytest.approx(values[key].total_effect, abs=1e-5)
                assert mine.direct_effect == pytest.approx(values[key].direct_effect, abs=1e-5)


def test_top_rows_are_unioned_across_prompts(engine):
    r = engine.attribute(_request(IOI, "When Mary and John went, John gave a drink to", top_k=3))
    keys = [row.key for row in r.nodes]
    assert len(keys) == len(set(keys))
    assert all(len(row.values) == 2 for row in r.nodes)
    targets = [p.token for p in r.prompts[0].target_predictions]
    assert targets == [" Mary", " John"]


def test_pair_ablation_removes_exactly_that_pair(engine, small_model):
    from mechscope.inference import gpt2_tokenizer
    tokens = torch.tensor([gpt2_tokenizer().encode(IOI)])
    names = ["blocks.1.attn.hook_pattern", "blocks.1.attn.hook_v", "blocks.1.hook_attn_out"]
    _, clean = small_model.run_with_cache(tokens, names=names)
    _, ablated = small_model.run_with_cache(tokens, names=names, interventions=[
        ZeroAblate("blocks.1.attn.hook_pattern", head=3, query=13, key=6)])
    p = clean["blocks.1.attn.hook_pattern"][0, 3, 13, 6]
    write = p * clean["blocks.1.attn.hook_v"][0, 6, 3] @ small_model.h[1].attn.W_O[3]
    change = ablated["blocks.1.hook_attn_out"][0] - clean["blocks.1.hook_attn_out"][0]
    assert torch.allclose(change[13], -write, atol=1e-6)
    assert change[:13].abs().max() == 0


def test_trace_through_value_uses_the_downstream_gradient(engine, small_model):
    from mechscope.inference import gpt2_tokenizer
    head = NodeRef(kind="attn_head", layer=0, index=1, position=-1, key_position=3)
    down = NodeRef(kind="mlp_neuron", layer=2, index=9, position=-1)
    to_loss = engine.attribute(_request(IOI, trace=TraceSpec(node=head, through="v")))
    to_node = engine.attribute(_request(IOI, trace=TraceSpec(node=head, through="v", downstream=down)))
    assert to_loss.prompts[0].loss != pytest.approx(to_node.prompts[0].loss)
    # independent computation of the traced scalar: p * (v W_O) . d(neuron pre)/d(attn_out)
    tokens = torch.tensor([gpt2_tokenizer().encode(IOI)])
    store = {}

    def keep(x, ctx):
        store[ctx.name] = x

    with torch.enable_grad():
        small_model(tokens, fwd_hooks=[("hook_embed", lambda x, c: x.detach().requires_grad_(True)),
                                       ("blocks.2.ln2.hook_scale", lambda x, c: x.detach()),
                                       ("blocks.0.hook_attn_out", keep), ("blocks.2.mlp.hook_pre", keep),
                                       ("blocks.0.attn.hook_pattern", keep), ("blocks.0.attn.hook_v", keep)])
        (g,) = torch.autograd.grad(store["blocks.2.mlp.hook_pre"][0, 13, 9], [store["blocks.0.hook_attn_out"]])
    p = store["blocks.0.attn.hook_pattern"][0, 1, 13, 3].detach()
    v = store["blocks.0.attn.hook_v"][0, 3, 1].detach()
    expected = float(p * (v @ small_model.h[0].attn.W_O[1]) @ g[0, 13])
    assert to_node.prompts[0].loss == pytest.approx(expected, abs=1e-5)


def test_trace_through_query_reports_the_attention_logit(engine, small_model):
    from mechscope.inference import gpt2_tokenizer
    head = NodeRef(kind="attn_head", layer=2, index=0, position=-1, key_position=5)
    r = engine.attribute(_request(IOI, trace=TraceSpec(node=head, through="q")))
    _, cache = small_model.run_with_cache(torch.tensor([gpt2_tokenizer().encode(IOI)]), names=["blocks.2.attn.hook_attn_scores"])
    assert r.prompts[0].loss == pytest.approx(float(cache["blocks.2.attn.hook_attn_scores"][0, 0, 13, 5]), abs=1e-5)
    assert all(row.layer is None or row.layer < 2 for row in r.nodes)


@pytest.mark.parametrize("request_kwargs,field", [
    ({"loss": LossSpec(targets=[" Marylandia"], distractors=[" John"])}, "loss.targets[0]"),
    ({"loss": LossSpec(targets=[], distractors=[" John"])}, "loss.targets"),
    ({"loss": LossSpec(targets=[" Mary"], distractors=[" John"], position=40)}, "loss.position"),
    ({"trace": TraceSpec(node=NodeRef(kind="mlp_neuron", layer=9, index=0, position=-1))}, "trace.node.layer"),
    ({"trace": TraceSpec(node=NodeRef(kind="mlp_neuron", layer=0, index=9999, position=-1))}, "trace.node.index"),
    ({"trace": TraceSpec(node=NodeRef(kind="attn_head", layer=0, index=0, position=-1))}, "trace.node.key_position"),
])
def test_bad_requests_name_the_field(engine, request_kwargs, field):
    with pytest.raises(RequestError) as info:
        engine.attribute(_request(IOI, **request_kwargs))
    assert info.value.field == field
