"""On the shipped organism, the engine finds the circuits the task suite planted, and its linear
estimates agree with real ablations."""

import pytest
import torch

from mechscope.activation_server.engine.shared_passes import node_tensors
from mechscope.activation_server.engine.engine import Engine
from mechscope.activation_server.schemas import AttributionRequest, LossSpec, PromptSpec
from mechscope.datasets.task_suite import TaskSuite
from mechscope.inference import ZeroAblate, gpt2_tokenizer, load_model


@pytest.fixture(scope="module")
def organism_engine():
    return Engine(load_model("organism"))


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra @ rb) / (ra.norm() * rb.norm()))


def _ioi_requests(n: int, split: str = "heldout"):
    tok = gpt2_tokenizer()
    for ex in TaskSuite(0).ioi_examples(n, split):
        text = tok.decode(ex.tokens[1:]) if ex.tokens[0] == tok.eot_token_id else tok.decode(ex.tokens)
        yield ex, AttributionRequest(prompts=[PromptSpec(text=text, prepend_bos=ex.tokens[0] == tok.eot_token_id)],
                                     loss=LossSpec(targets=[tok.token_str(ex.io_token)],
                                                   distractors=[tok.token_str(ex.s_token)]))


def test_head_effect_estimates_rank_like_real_ablations(organism_engine):
    """Spearman rank correlation, over all heads, between estimated head effects and the real change
    of the logit difference when the head is zero-ablated (summed over 8 held-out IOI prompts).
    The linear (attribution-patching) estimate is reported and guarded; integrated gradients is the
    estimator that meets the 0.8 target (the linear one misjudges heads whose removal changes later
    attention: the name movers' effect is not linear in their output)."""
    from mechscope.activation_server.engine.head_effects import (ablation_head_effects, integrated_gradient_head_effects,
                                                          linear_head_effects)
    model = organism_engine.model
    cfg = model.cfg
    linear, integrated = torch.zeros(cfg.n_layers, cfg.n_heads), torch.zeros(cfg.n_layers, cfg.n_heads)
    actual, batched = torch.zeros(cfg.n_layers, cfg.n_heads), torch.zeros(cfg.n_layers, cfg.n_heads)
    for ex, request in _ioi_requests(8):
        batched += ablation_head_effects(organism_engine, request)
        linear += linear_head_effects(organism_engine, request)
        integrated += integrated_gradient_head_effects(organism_engine, request, steps=8)
        t = node_tensors(organism_engine, request)
        tokens, clean = t.prepared.tokens, float(t.scalars[0])
        for layer in range(cfg.n_layers):
            for h in range(cfg.n_heads):  # reference: one plain ablated forward per head
                with torch.no_grad():
                    logits = model(tokens, interventions=[ZeroAblate(f"blocks.{layer}.attn.hook_z", head=h)])[0, -1]
                actual[layer, h] += clean - float(logits[ex.io_token] - logits[ex.s_token])
    rho_linear = _spearman(linear.flatten(), actual.flatten())
    rho_ig = _spearman(integrated.flatten(), actual.flatten())
    print(f"Spearman vs zero-ablation over {cfg.n_layers * cfg.n_heads} heads: linear {rho_linear:.3f}, "
          f"integrated gradients {rho_ig:.3f}")
    assert rho_ig >= 0.8
    # The linear estimate is only guarded against collapse: since the organism learned IOI over 374
    # names its name movers' attention is saturated (p > 0.99), so removing one moves the loss far
    # from linearly (0.67 on the shipped organism, 0.53 on the previous one, 0.76 on the first). Its
    # arithmetic is checked against finite differences in test_attribution.py.
    assert rho_linear >= 0.4
    assert torch.allclose(batched, actual, atol=1e-3)  # the engine's batched ablations equal single runs


def test_top_direct_effect_heads_attend_from_the_end_to_the_indirect_object(organism_engine):
    """Name movers: among the three heads that raise the IO logit most directly (IO logit against a
    neutral token, so S-suppressing heads do not compete), one attends from the last token to the IO
    name — or to the token right after it, which a previous-token head has given the name (a name
    mover of an earlier organism put p ≈ 0.998 on " and" after the first name) — and not to S."""
    tok = gpt2_tokenizer()
    for ex, request in _ioi_requests(8, "train"):
        io_logit = request.model_copy(update={"loss": LossSpec(targets=[tok.token_str(ex.io_token)],
                                                               distractors=[" the"])})
        t = node_tensors(organism_engine, io_logit)
        heads = [b for b in t.groups if b.kind == "attn_head"]
        end = t.loss_positions[0]
        per_head = torch.stack([torch.nan_to_num(b.values["direct_effect"][0, :, end]).sum(-1) for b in heads])
        ids = t.prepared.token_ids[0]
        io_positions = [i for i, tkn in enumerate(ids) if tkn == ex.io_token]
        s_positions = [i for i, tkn in enumerate(ids) if tkn == ex.s_token]
        movers = []
        for flat in per_head.flatten().topk(3).indices.tolist():
            layer, head = divmod(flat, per_head.shape[1])
            pattern = heads[layer].attention_prob[0, head, end, :end + 1]
            if (int(pattern.argmax()) in io_positions + [p + 1 for p in io_positions]
                    and float(pattern[s_positions].sum()) < 0.1):
                movers.append((layer, head))
        assert movers, (ex.template, per_head)


def test_induction_heads_are_ranked_top_for_predicting_the_repeat(organism_engine):
    model = organism_engine.model
    tok = gpt2_tokenizer()
    ex = TaskSuite(0).induction_examples(1, "heldout", span_length=10)[0]
    tokens = torch.tensor([ex.tokens])
    # induction score: attention from each repeated token to the token after its first occurrence
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(tokens, names=names)
    rs, fs, n = ex.repeat_start, ex.first_start, ex.span_length
    queries = torch.arange(rs, rs + n - 1)
    keys = torch.arange(fs + 1, fs + n)
    score = torch.stack([cache[nm][0][:, queries, keys].mean(-1) for nm in names])  # [layer, head]
    # engine: explain the prediction of the repeat's last token
    target = tok.token_str(ex.tokens[rs + n - 1])
    text = tok.decode(ex.tokens[1:rs + n - 1])
    request = AttributionRequest(prompts=[PromptSpec(text=text, prepend_bos=True)],
                                 loss=LossSpec(kind="log_prob", targets=[target]))
    t = node_tensors(organism_engine, request)
    effect = torch.stack([torch.nan_to_num(b.values["total_effect"][0]).sum((1, 2))
                          for b in t.groups if b.kind == "attn_head"])
    # the induction heads: those that put most of their attention on the token after the first
    # occurrence (the round-2 organism has four, two in layer 1 and two in layer 3, all >= 0.96)
    top_induction = set((score.flatten() > 0.5).nonzero().flatten().tolist())
    assert 1 <= len(top_induction) <= 8, score
    top_engine = set(effect.flatten().topk(3).indices.tolist())
    assert top_induction & top_engine, (score, effect)


@pytest.mark.parametrize("mlp,attention", [("neurons", "heads"), ("latents", "latents")])
def test_direct_effects_sum_to_the_logit_difference_on_the_organism(mlp, attention):
    from mechscope.autoencoders.organism_saes import load_organism_saes
    engine = Engine(load_model("organism"), load_organism_saes())
    _, request = next(_ioi_requests(1, "train"))
    t = node_tensors(engine, request.model_copy(update={"mlp": mlp, "attention": attention}))
    total = float(sum(torch.nansum(b.values["direct_effect"][0]) for b in t.groups) + t.bias_direct[0])
    assert abs(total - float(t.scalars[0])) <= 1e-4
    assert any(b.kind == "sae_latent" for b in t.groups) == (mlp == "latents")
