"""Issue 23: the estimated total effect's linearisation point (final LayerNorm scale frozen or live)
and the exact-ablation column, against independent references on the organism: finite differences
of real reruns of the model for the live gradient, the request's own intervention path for the
exact column, and the loss itself for the closure of direct effects."""

from __future__ import annotations

import pytest
import torch

from mechscope.activation_server.engine.engine import Engine
from mechscope.activation_server.engine.shared_passes import node_tensors
from mechscope.activation_server.errors import RequestError
from mechscope.activation_server.schemas import AttributionRequest, NodeIntervention, NodeRef
from mechscope.autoencoders.organism_saes import load_organism_saes
from mechscope.inference import load_model

IOI = "When Mary and John went to the store, John gave a drink to"
IOI_S = "When Mary and John went to the store, Mary gave a drink to"
LOSS = {"targets": [" Mary"], "distractors": [" John"]}
GREATER = {"text": "The war lasted from the year 1732 to the year 17"}


@pytest.fixture(scope="module")
def organism():
    return Engine(load_model("organism"), list(load_organism_saes()))


def _request(**kw) -> AttributionRequest:
    return AttributionRequest.model_validate({"prompts": [{"text": IOI}], "loss": LOSS, **kw})


def _direct_sum(t) -> torch.Tensor:
    return sum(torch.nansum(g.values["direct_effect"].flatten(1), 1) for g in t.groups) + t.bias_direct


@pytest.mark.parametrize("ln", ["frozen", "live"])
@pytest.mark.parametrize("side", ["neurons", "latents"])
@pytest.mark.parametrize("loss", [LOSS, {"targets": [" Mary", " the"], "distractors": [" John"]}])
def test_direct_effects_close_exactly_in_both_modes(organism, ln, side, loss):
    """Σ direct effects + biases = the logit difference (a logit difference is linear in the final
    residual once the scale is held: that is what direct effects decompose)."""
    request = _request(total_effect_ln=ln, mlp=side, attention="latents" if side == "latents" else "heads",
                       loss=loss, prompts=[{"text": IOI}, {"text": IOI_S}])
    t = node_tensors(organism, request)
    assert torch.allclose(_direct_sum(t), t.scalars, atol=1e-4), (_direct_sum(t), t.scalars)


def test_direct_effects_are_the_same_in_both_modes(organism):
    """Live mode computes the frozen-scale read gradient analytically; frozen mode gets it from
    autograd with the scale detached: the two agree node for node."""
    frozen, live = (node_tensors(organism, _request(total_effect_ln=ln)) for ln in ("frozen", "live"))
    for a, b in zip(frozen.groups, live.groups):
        assert torch.allclose(a.values["direct_effect"].nan_to_num(), b.values["direct_effect"].nan_to_num(), atol=1e-5)
    # ... while the total effects differ (the final LayerNorm scale depends on every node)
    diff = max(float((a.values["total_effect"] - b.values["total_effect"]).nan_to_num().abs().max())
               for a, b in zip(frozen.groups, live.groups))
    assert diff > 1e-2


def _rerun_loss(engine, hook: str, index: tuple, factor: float, splices=()) -> float:
    """The logit difference of a plain rerun of the model with one activation scaled by ``factor``."""
    from mechscope.activation_server.engine.prompts import prepare_prompts
    from mechscope.activation_server.schemas import PromptSpec
    prepared = prepare_prompts([PromptSpec(text=IOI)], engine.model.cfg.n_ctx)
    mary, john = engine.tokenizer.encode(" Mary")[0], engine.tokenizer.encode(" John")[0]

    def scale(x, ctx):
        x = x.clone()
        x[(0, *index)] *= factor
        return x
    with torch.no_grad():
        logits = engine.model(prepared.tokens, fwd_hooks=[(hook, scale)], splices=engine.splices(splices))[0, -1]
    return float(logits[mary] - logits[john])


@pytest.mark.parametrize("side", ["neurons", "latents"])
def test_live_total_effects_match_finite_differences(organism, side):
    """activation × ∂loss/∂activation (live mode) = the central difference of the loss when the
    activation is scaled by 1 ± ε in a real rerun, for the largest nodes of every kind."""
    request = _request(total_effect_ln="live", mlp=side, attention="latents" if side == "latents" else "heads")
    t = node_tensors(organism, request)
    splices = sorted({g.sae for g in t.groups if g.sae})
    checked, eps = 0, 1e-2
    for g in t.groups:
        te = g.values["total_effect"][0].nan_to_num()
        if g.kind not in ("attn_head", "mlp_neuron", "sae_latent"):
            continue
        for flat in te.abs().flatten().topk(2).indices.tolist():
            index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), te.shape))
            hook = {"attn_head": f"blocks.{g.layer}.attn.hook_pattern", "mlp_neuron": f"blocks.{g.layer}.mlp.hook_post",
                    "sae_latent": f"{g.sae}.hook_sae_acts_post"}[g.kind]
            fd = (_rerun_loss(organism, hook, index, 1 + eps, splices)
                  - _rerun_loss(organism, hook, index, 1 - eps, splices)) / (2 * eps)
            assert abs(fd - float(te[index])) <= 2e-3 + 2e-2 * abs(fd), (g.kind, g.layer, index, fd, float(te[index]))
            checked += 1
    assert checked >= 8


def _loss_with(engine, request: AttributionRequest, prompt: int, node: NodeRef) -> float:
    """The loss on ``prompt`` with ``node`` zero-ablated, through the request's intervention path."""
    prompts = [p.model_copy(update={"interventions": [*p.interventions, NodeIntervention(node=node, mode="zero")]})
               if i == prompt else p for i, p in enumerate(request.prompts)]
    return engine.attribute(request.model_copy(update={"prompts": prompts, "exact_top_n": 0})).prompts[prompt].loss


@pytest.mark.parametrize("side", ["neurons", "latents"])
def test_exact_effects_equal_real_ablations(organism, side):
    """The exact column of the first rows = loss(clean) − loss(node zero-ablated), the ablated loss
    measured by the request's own NodeIntervention path, on each prompt, under the request's own
    interventions (prompt 1 has one)."""
    head = NodeRef(kind="attn_head", layer=2, index=1, position=-1)
    request = _request(prompts=[{"text": IOI}, {"text": IOI, "interventions": [{"node": head.model_dump(), "mode": "zero"}]}],
                       mlp=side, attention="latents" if side == "latents" else "heads", exact_top_n=8, top_k=5)
    result = organism.attribute(request)
    measured = [r for r in result.nodes if any(v is not None and v.exact_effect is not None for v in r.values)]
    assert len(measured) == 8 and measured == result.nodes[:8]
    assert all(v is None or v.exact_effect is None for r in result.nodes[8:] for v in r.values)
    kinds = set()
    for row in measured:
        for i, values in enumerate(row.values):
            if values is None:
                continue
            node = NodeRef(kind=row.kind, layer=row.layer, index=row.index, sae=row.sae, position=row.positions[i],
                           key_position=row.key_positions[i] if row.key_positions else None)
            expected = result.prompts[i].loss - _loss_with(organism, request, i, node)
            assert abs(values.exact_effect - expected) <= 1e-4 + 1e-4 * abs(expected), (row.key, i)
            kinds.add(row.kind)
    assert len(kinds) >= 2


def test_exact_effects_for_a_softmax_loss_and_mean_ablation(organism):
    """log_prob loss (full unembedding) and mean ablation of the engine's batched function against the
    intervention path."""
    from mechscope.activation_server.engine.exact_effects import AblatedNode, exact_effects
    request = AttributionRequest.model_validate({"prompts": [GREATER], "loss": {"kind": "log_prob", "targets": ["33"]}})
    t = node_tensors(organism, request)
    nodes = [AblatedNode("mlp_neuron", 1, 7, None, (5,)), AblatedNode("attn_head", 3, 2, None, (-1 + t.prepared.lengths[0],)),
             AblatedNode("embedding", None, 0, None, (3,))]
    got = exact_effects(organism, t.prepared, [], [], request.loss, t.loss_positions, nodes, "mean")[:, 0]
    clean = float(t.scalars[0])
    for n, x in zip(nodes, got.tolist()):
        node = NodeRef(kind=n.kind, layer=n.layer, index=n.index, position=n.positions[0])
        prompt = request.prompts[0].model_copy(update={"interventions": [NodeIntervention(node=node, mode="mean")]})
        ablated = organism.attribute(request.model_copy(update={"prompts": [prompt]})).prompts[0].loss
        assert abs(x - (clean - ablated)) <= 1e-4, n


def test_exact_top_n_needs_a_loss_explanation(organism):
    with pytest.raises(RequestError) as e:
        organism.attribute(_request(exact_top_n=5, trace={"node": {"kind": "mlp_neuron", "layer": 2, "index": 5,
                                                                   "position": -1}, "through": "pre"}))
    assert e.value.field == "exact_top_n"


def test_modes_do_not_share_a_pass(organism):
    """A frozen and a live request answered together equal each answered alone."""
    frozen, live = _request(total_effect_ln="frozen", top_k=5), _request(total_effect_ln="live", top_k=5)
    together = organism.attribute_many([frozen, live])
    assert together[0] == organism.attribute(frozen) and together[1] == organism.attribute(live)
    assert together[0].nodes != together[1].nodes


def test_softmax_correction_recomputes_the_pattern_a_rerun_gives(organism):
    """AtP*'s correction: the pattern it recomputes for a node removed from a later layer's queries
    and keys equals the pattern of a real rerun with exactly that removed (the node's write
    subtracted from ``hook_q_input`` / ``hook_k_input`` at its position, values untouched); and its
    first-order score change is the rerun's central difference for a small removal (± ε)."""
    from mechscope.activation_server.engine.exact_effects import AblatedNode
    from mechscope.activation_server.engine.qk_correction import _layer_hooks, _write, pattern_change
    from mechscope.activation_server.engine.shared_passes import plan_request
    from mechscope.activation_server.engine.node_values import forward_backward
    import dataclasses
    planned = plan_request(organism, _request())
    prepared, model = planned.prepared, organism.model
    objective = dataclasses.replace(planned.loss_objective, capture=[h for layer in range(4) for h in _layer_hooks(layer)])
    _, _, acts, _ = forward_backward(organism, prepared, [], objective, planned.mlp_plan, planned.attn_plan, [],
                                     planned.loss_objective.positions)
    nodes = [AblatedNode("mlp_neuron", 0, 126, None, (3,)), AblatedNode("attn_head", 1, 2, None, (7,))]
    for node in nodes:
        w = _write(organism, acts, node, 0)
        layer, pos = node.layer + 1, node.positions[0]

        def rerun(scale: float) -> torch.Tensor:
            def remove(x, ctx):
                x = x.clone()
                x[0, pos] -= scale * w
                return x
            hooks = [(f"blocks.{layer}.hook_{s}_input", remove) for s in "qk"]
            _, cache = model.run_with_cache(prepared.tokens, names=[f"blocks.{layer}.attn.hook_pattern",
                                                                    f"blocks.{layer}.attn.hook_attn_scores"],
                                            fwd_hooks=hooks)
            return cache[f"blocks.{layer}.attn.hook_pattern"][0], cache[f"blocks.{layer}.attn.hook_attn_scores"][0]

        _, new_pattern = pattern_change(model, acts, layer, 0, -w[None], torch.tensor([pos]))
        true_pattern, _ = rerun(1.0)
        assert torch.allclose(new_pattern[0], true_pattern, atol=2e-5), (node, (new_pattern[0] - true_pattern).abs().max())
        eps = 0.05    # central difference: error O(ε³)
        d_linear, _ = pattern_change(model, acts, layer, 0, -eps * w[None], torch.tensor([pos]))
        (_, up), (_, down) = rerun(eps), rerun(-eps)
        clean = acts[f"blocks.{layer}.attn.hook_attn_scores"][0]
        finite = torch.where(clean.isinf(), 0.0, (up - down) / 2)
        assert float(finite.abs().max()) > 1e-3
        assert torch.allclose(d_linear[0], finite, atol=1e-2 * float(finite.abs().max())), \
            (d_linear[0] - finite).abs().max()


def test_graddrop_estimates_match_reruns_with_a_layer_frozen(organism):
    """GradDrop's estimate with layer l's gradient dropped = the central difference of a real rerun
    in which the node is scaled by 1 ± ε while layer l's attention and MLP outputs are held at their
    clean values (every path through layer l cut)."""
    from mechscope.activation_server.engine.graddrop import dropped_estimates, graddrop_scores
    from mechscope.activation_server.engine.shared_passes import plan_request
    request = _request(total_effect_ln="live")
    planned = plan_request(organism, request)
    groups = dropped_estimates(organism, planned)
    neurons = next(g for g in groups if g.kind == "mlp_neuron" and g.layer == 0)
    live = node_tensors(organism, request)
    live_neurons = next(g for g in live.groups if g.kind == "mlp_neuron" and g.layer == 0)
    pos, index = divmod(int(live_neurons.values["total_effect"][0].abs().flatten().argmax()), live_neurons.shape[1])
    held = [f"blocks.{layer}.hook_{s}_out" for layer in range(4) for s in ("attn", "mlp")]
    _, cache = organism.model.run_with_cache(planned.prepared.tokens, names=held)
    mary, john = organism.tokenizer.encode(" Mary")[0], organism.tokenizer.encode(" John")[0]

    def loss(factor: float, frozen_layer: int) -> float:
        def scale(x, ctx):
            x = x.clone()
            x[0, pos, index] *= factor
            return x

        def hold(x, ctx):
            return cache[ctx.name]
        hooks = [("blocks.0.mlp.hook_post", scale)] + [(f"blocks.{frozen_layer}.hook_{s}_out", hold) for s in ("attn", "mlp")]
        with torch.no_grad():
            logits = organism.model(planned.prepared.tokens, fwd_hooks=hooks)[0, -1]
        return float(logits[mary] - logits[john])

    eps = 1e-2
    for layer in (1, 2, 3):
        fd = (loss(1 + eps, layer) - loss(1 - eps, layer)) / (2 * eps)
        got = float(neurons.values["dropped"][layer, 0, pos, index])
        assert abs(got - fd) <= 2e-3 + 2e-2 * abs(fd), (layer, got, fd)
    # dropping layer 0's gradient cuts the neuron's own output: nothing reaches the loss
    assert float(neurons.values["dropped"][0, 0, pos, index]) == 0.0
    # the score: mean |dropped| over the other layers
    score = next(g for g in graddrop_scores(organism, planned) if g.kind == "mlp_neuron" and g.layer == 0)
    expected = neurons.values["dropped"][1:, 0, pos, index].abs().mean()
    assert torch.isclose(score.values["graddrop"][0, pos, index], expected)


@pytest.mark.parametrize("side", ["neurons", "latents"])
def test_graddrop_scores_reach_every_row_of_the_table(organism, side):
    """graddrop=True: every value of every row carries its node's GradDrop score (the row's node
    located in the score tensors as the table located it: heads by (head, query, key), neurons and
    latents by (position, index), embeddings and errors by position), on each prompt."""
    from mechscope.activation_server.engine.graddrop import graddrop_scores
    from mechscope.activation_server.engine.shared_passes import plan_request
    request = _request(graddrop=True, top_k=5, mlp=side, attention="latents" if side == "latents" else "heads",
                       prompts=[{"text": IOI}, {"text": IOI_S}])
    result = organism.attribute(request)
    scores = {(g.kind, g.layer, g.sae): g.values["graddrop"]
              for g in graddrop_scores(organism, plan_request(organism, request))}
    kinds = set()
    for row in result.nodes:
        for i, values in enumerate(row.values):
            assert values is not None and values.graddrop is not None
            q = row.positions[i]
            at = ((row.index, q, row.key_positions[i]) if row.kind == "attn_head"
                  else (q, row.index) if row.kind in ("mlp_neuron", "sae_latent") else (q,))
            assert abs(values.graddrop - float(scores[(row.kind, row.layer, row.sae)][(i, *at)])) <= 1e-5
            kinds.add(row.kind)
    assert len(kinds) >= 3
    with pytest.raises(RequestError) as e:
        organism.attribute(_request(graddrop=True, trace={"node": {"kind": "mlp_neuron", "layer": 2, "index": 5,
                                                                   "position": -1}, "through": "pre"}))
    assert e.value.field == "graddrop"


def test_logit_changes_match_finite_differences_and_the_softmax_is_exact(organism):
    """engine/logit_space.py: each node's first-order contribution to each logit = the central
    difference of that logit in a real rerun (node scaled by 1 ± ε); and the softmax estimate of a
    contribution vector is the exact change of log P(target) when only those logits move."""
    from mechscope.activation_server.engine.logit_space import logit_changes, softmax_estimate, softmax_tokens
    from mechscope.activation_server.engine.shared_passes import plan_request
    request = _request(loss={"kind": "log_prob", "targets": [" Mary"]})
    t = node_tensors(organism, request)
    tokens = softmax_tokens(t.logits[0], request.loss, k=4)
    assert tokens[0] == organism.tokenizer.encode(" Mary")[0] and len(tokens) >= 4
    groups = logit_changes(organism, plan_request(organism, request), [tokens])
    neurons = next(g for g in groups if g.kind == "mlp_neuron" and g.layer == 1)
    neurons.values["logits"] = neurons.values["logits"][:, 0]
    pos, index = divmod(int(neurons.values["logits"][0].abs().flatten().argmax()), neurons.values["logits"].shape[-1])

    def logits(factor: float) -> torch.Tensor:
        def scale(x, ctx):
            x = x.clone()
            x[0, pos, index] *= factor
            return x
        with torch.no_grad():
            return organism.model(t.prepared.tokens, fwd_hooks=[("blocks.1.mlp.hook_post", scale)])[0, -1, tokens]
    eps = 1e-2
    fd = (logits(1 + eps) - logits(1 - eps)) / (2 * eps)
    got = neurons.values["logits"][:, pos, index]
    assert torch.allclose(got, fd, atol=2e-3 + 2e-2 * float(fd.abs().max())), (got, fd)
    # the softmax estimate: exact log-softmax of the moved logits (the rest of the vocabulary fixed)
    clean = t.logits[0]
    contribution = torch.zeros(len(tokens), 1)
    contribution[0, 0] = 3.0                                   # the target's logit drops by 3
    moved = clean.clone()
    moved[tokens[0]] -= 3.0
    expected = clean.log_softmax(-1)[tokens[0]] - moved.log_softmax(-1)[tokens[0]]
    assert torch.allclose(softmax_estimate(contribution, clean, tokens, request.loss)[0], expected, atol=1e-4)


def _spearman(a: list[float], b: list[float]) -> float:
    ra, rb = torch.tensor(a).argsort().argsort().double(), torch.tensor(b).argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra @ rb) / (ra.norm() * rb.norm()))


def test_softmax_estimate_ranks_like_real_ablations_on_a_saturated_prompt(organism):
    """A fact the organism knows (log P ≈ 0): activation × gradient is ≈ 0 everywhere, the softmax
    estimate (total_effect_softmax) is not, and over the rows the table measures for real
    (exact_top_n) it ranks heads and neurons like the real ablations, better than the gradient.
    (Embeddings are left out: zeroing a token's embedding wipes most of its residual stream, too far
    for any estimate linear up to the logits.)"""
    from mechscope.datasets.task_suite import TaskSuite
    from mechscope.inference import gpt2_tokenizer
    tok = gpt2_tokenizer()
    ex = TaskSuite(0).fact_examples()[0]
    base = {"prompts": [{"text": tok.decode(list(ex.tokens[1:]))}], "top_k": 10, "exact_top_n": 40,
            "loss": {"kind": "log_prob", "targets": [tok.token_str(ex.answer_token)]}}
    plain = organism.attribute(AttributionRequest.model_validate(base))
    soft = organism.attribute(AttributionRequest.model_validate({**base, "total_effect_softmax": True}))
    assert plain.prompts[0].loss > -0.05                       # saturated: the model is sure
    rho = {}
    for name, result in (("gradient", plain), ("softmax", soft)):
        rows = [r.values[0] for r in result.nodes[:40] if r.kind not in ("embedding", "pos_embedding")]
        est, true = torch.tensor([v.total_effect for v in rows]), torch.tensor([v.exact_effect for v in rows])
        rho[name] = (_spearman(est.tolist(), true.tolist()), float(torch.corrcoef(torch.stack([est, true]))[0, 1]),
                     float(est.abs().max() / true.abs().max()))
    assert rho["softmax"][0] >= 0.95 and rho["softmax"][0] > rho["gradient"][0], rho
    # Scale is not claimed: on the round-1 organism the gradient's biggest estimate was ~0.2% of the
    # biggest real effect and the softmax's ~1/3; on round 2's (this prompt: log P > -0.05) 30% and 13%.
    assert rho["softmax"][2] > 0.05 and rho["gradient"][2] > 0, rho
    # direct effects, activations, the loss: untouched
    by_key = {r.key: r.values[0] for r in plain.nodes}
    same = [r for r in soft.nodes if r.key in by_key]
    assert same and all(by_key[r.key].direct_effect == r.values[0].direct_effect for r in same)
    with pytest.raises(RequestError) as e:
        organism.attribute(_request(total_effect_softmax=True))
    assert e.value.field == "total_effect_softmax"


def test_the_servers_json_with_the_new_columns_is_the_validated_results_json(organism):
    """exact_effect / graddrop appear in the JSON only where measured, in the server's plain data and
    in the validated model alike, byte for byte."""
    requests = [_request(top_k=3), _request(top_k=3, exact_top_n=4, graddrop=True)]
    for request, sent, result in zip(requests, organism.attribute_many_json(requests), organism.attribute_many(requests)):
        assert sent == result.model_dump_json().encode()
    assert b"exact_effect" not in organism.attribute_many_json(requests[:1])[0]


def test_exact_effects_for_a_kl_loss_hold_the_reference_clean(organism):
    """KL(reference || prompt): the exact column, like the estimate's gradient, keeps the reference
    prompt's distribution clean; on the other prompts it equals the intervention path's."""
    request = _request(prompts=[{"text": IOI}, {"text": IOI_S}], loss={"kind": "kl", "reference_prompt": 0},
                       exact_top_n=4, top_k=3)
    result = organism.attribute(request)
    for row in result.nodes[:4]:
        values = row.values[1]
        if values is None:
            continue
        node = NodeRef(kind=row.kind, layer=row.layer, index=row.index, sae=row.sae, position=row.positions[1],
                       key_position=row.key_positions[1] if row.key_positions else None)
        expected = result.prompts[1].loss - _loss_with(organism, request, 1, node)
        assert abs(values.exact_effect - expected) <= 1e-4 + 1e-4 * abs(expected), row.key


def test_over_http_the_new_options_answer_and_bad_ones_name_their_field(organism):
    """A real server on 127.0.0.1: exact_top_n / graddrop / total_effect_ln come back in the JSON;
    an unknown linearisation, a trace with exact_top_n and exact_top_n over the limit are 422s naming
    the field."""
    import httpx
    from tests.support.http_fixtures import make_app
    from tests.support.live_server import LiveServer
    body = {"prompts": [{"text": IOI}], "loss": LOSS, "top_k": 3}
    from mechscope.activation_server.http.config import Limits
    with LiveServer(make_app(organism, limits=Limits(max_top_k=10))) as server:
        url = server.url + "/api/v1/attribution"
        ok = httpx.post(url, json={**body, "exact_top_n": 3, "graddrop": True}, timeout=120)
        assert ok.status_code == 200, ok.text
        rows = ok.json()["nodes"]
        assert all("exact_effect" in v for r in rows[:3] for v in r["values"])
        assert all("exact_effect" not in v and "graddrop" in v for r in rows[3:] for v in r["values"])
        frozen = httpx.post(url, json={**body, "total_effect_ln": "frozen"}, timeout=120).json()
        assert frozen["nodes"] != ok.json()["nodes"]
        for bad, field in (({"total_effect_ln": "warm"}, "total_effect_ln"), ({"exact_top_n": 11}, "exact_top_n"),
                           ({"exact_top_n": 2, "trace": {"node": {"kind": "mlp_neuron", "layer": 2, "index": 5,
                                                                  "position": -1}}}, "exact_top_n")):
            r = httpx.post(url, json={**body, **bad}, timeout=120)
            assert r.status_code == 422 and field in r.text, (bad, r.status_code, r.text)
