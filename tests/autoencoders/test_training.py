"""TopK SAE training on a tiny random GPT-2, and the shipped organism SAEs."""

import pytest
import torch

from mechscope.autoencoders import SAEConfig, SAESplice, check_compatible
from mechscope.autoencoders.evaluation import evaluate_sae
from mechscope.autoencoders.organism_saes import load_organism_saes, organism_sae_hook_points
from mechscope.autoencoders.training import (TrainingConfig, harvest_activations, init_topk_sae, stream_activations,
                                             train_saes)
from mechscope.datasets.task_suite import TaskSuite
from mechscope.inference import GPT2, GPT2Config, InvalidInputError, hooks_scope, load_model

POINTS = ["blocks.0.hook_mlp_out", "blocks.1.hook_attn_out"]
SMALL = dict(n_latents=128, k=8, batch_tokens=256, total_tokens=160 * 256, buffer_tokens=2048, lr=4e-3,
             warmup_steps=10, dead_after_tokens=2048, aux_k=32)


@pytest.fixture(scope="module")
def model():
    m = GPT2(GPT2Config(n_layers=2, n_heads=4, d_model=64, n_ctx=128))
    m.init_weights(seed=0)
    return m.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def suite():
    return TaskSuite(seed=0)


@pytest.fixture(scope="module")
def heldout(suite):
    return [suite.training_rows(4, 20_000_000)]


@pytest.fixture(scope="module")
def trained(model, suite, heldout):
    return train_saes(model, suite.training_batches(8, 10_000_000), POINTS, TrainingConfig(**SMALL),
                      model_name="tiny", source={"note": "test"}, eval_batches=heldout, log_every=10, progress=False)


def test_training_reduces_the_error_and_keeps_latents_alive(model, suite, trained):
    assert set(trained.saes) == set(POINTS) and set(trained.metrics) == set(POINTS)
    many_heldout = harvest_activations(model, suite.training_rows(32, 20_000_000), POINTS)  # 4096 tokens
    assert trained.tokens_per_sae == 160 * 256
    for point in POINTS:
        records = [r for r in trained.log if r["hook_point"] == point]
        assert [r["step"] for r in records] == list(range(0, 160, 10)) + [159]
        initial_fvu = records[0]["loss"]
        heldout = trained.metrics[point]  # held-out rows, raw activations: the input scale is folded in
        assert 1 - heldout.explained_variance < 0.5 * initial_fvu, (point, initial_fvu, heldout)
        assert records[-1]["loss"] < 0.5 * initial_fvu
        ever_active = (trained.saes[point].encode(many_heldout[point]) != 0).any(0)
        assert ever_active.float().mean() > 0.9 and records[-1]["dead_fraction"] < 0.1
        assert heldout.l0 <= 8 and records[-1]["l0"] <= 8


def test_trained_sae_records_its_provenance(trained):
    sae = trained.saes["blocks.1.hook_attn_out"]
    cfg = sae.config
    assert (cfg.d_in, cfg.n_latents, cfg.activation, cfg.k) == (64, 128, "topk", 8)
    assert cfg.hook_point == "blocks.1.hook_attn_out" and cfg.model_name == "tiny"
    assert cfg.input_normalization == "none"
    assert not cfg.expected_weight_processing.center_writing_weights and not cfg.expected_weight_processing.fold_ln
    assert cfg.source["note"] == "test" and cfg.source["training"]["tokens"] == 160 * 256
    assert cfg.source["training"]["k"] == 8 and cfg.source["training"]["input_scale"] > 0
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(128), atol=1e-5)
    assert not any(p.requires_grad for p in sae.parameters())


def _short_run(model, suite, seed):
    cfg = TrainingConfig(**{**SMALL, "total_tokens": 12 * 256, "seed": seed})
    return train_saes(model, suite.training_batches(8, 10_000_000), POINTS[:1], cfg, progress=False).saes[POINTS[0]]


def test_training_is_deterministic_given_the_seed(model, suite):
    a, b, c = _short_run(model, suite, 1), _short_run(model, suite, 1), _short_run(model, suite, 2)
    for name, tensor in a.tensors().items():
        assert torch.equal(tensor, b.tensors()[name]), name
    assert not torch.equal(a.W_dec, c.W_dec)


def test_harvest_matches_the_cache_and_skips_the_unembedding(model, suite):
    tokens = suite.training_rows(2, 10_000_000)
    calls = []
    with hooks_scope({"ln_final.hook_scale": lambda x, ctx: calls.append(ctx.name)}):
        acts = harvest_activations(model, tokens, POINTS)
    assert calls == []  # the forward pass stopped before the final LayerNorm
    _, cache = model.run_with_cache(tokens, names=POINTS)
    for point in POINTS:
        assert torch.equal(acts[point], cache[point].reshape(-1, 64))


def test_stream_shuffles_within_the_buffer(model, suite):
    batches = [suite.training_rows(2, 10_000_000 + 2 * i) for i in range(4)]  # 1024 tokens
    stream = list(stream_activations(model, batches, POINTS, buffer_tokens=1024, batch_tokens=256,
                                     generator=torch.Generator().manual_seed(0)))
    assert len(stream) == 4 and all(b[POINTS[0]].shape == (256, 64) for b in stream)
    harvested = torch.cat([harvest_activations(model, t, POINTS)[POINTS[0]] for t in batches])
    streamed = torch.cat([b[POINTS[0]] for b in stream])
    assert not torch.equal(streamed, harvested)
    assert torch.equal(streamed[streamed[:, 0].argsort()], harvested[harvested[:, 0].argsort()])
    # every hook point sees the same permutation: rows stay aligned across hook points
    order = torch.cat([harvest_activations(model, t, POINTS)[POINTS[1]] for t in batches])
    index = [int((harvested == row).all(1).nonzero()[0]) for row in streamed[:20]]
    assert torch.equal(torch.cat([b[POINTS[1]] for b in stream])[:20], order[index])


def test_init_is_a_unit_norm_tied_autoencoder():
    cfg = SAEConfig(d_in=16, n_latents=40, activation="topk", k=4)
    sae = init_topk_sae(cfg, torch.arange(16.0), seed=3)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(40))
    assert torch.equal(sae.W_enc, sae.W_dec.T) and torch.equal(sae.b_dec, torch.arange(16.0))


def test_config_validation_and_schedule():
    with pytest.raises(InvalidInputError, match="k=600"):
        TrainingConfig(n_latents=512, k=600)
    with pytest.raises(InvalidInputError, match="buffer_tokens"):
        TrainingConfig(batch_tokens=4096, buffer_tokens=1024)
    with pytest.raises(InvalidInputError, match="batch_tokens"):
        TrainingConfig(batch_tokens=0)
    cfg = TrainingConfig(total_tokens=100 * 4096, batch_tokens=4096, lr=1.0, warmup_steps=10, decay_fraction=0.2)
    assert cfg.n_steps == 100
    assert [round(cfg.lr_at(s), 6) for s in (0, 9, 50, 80, 90, 99)] == [0.1, 1.0, 1.0, 1.0, 0.5, 0.05]


def test_train_saes_rejects_bad_hook_points(model, suite):
    with pytest.raises(InvalidInputError, match="distinct"):
        train_saes(model, suite.training_batches(2), [POINTS[0], POINTS[0]], TrainingConfig(**SMALL))


def test_shipped_organism_saes_load_and_fit_the_organism():
    organism = load_model("organism")
    saes = load_organism_saes()
    assert [sae.config.hook_point for sae in saes] == organism_sae_hook_points(organism.cfg.n_layers)
    assert len(saes) == 8
    for sae in saes:
        assert sae.d_in == organism.cfg.d_model == 128
        assert sae.config.activation == "topk" and sae.config.k <= 32 and sae.config.model_name == "organism"
        check_compatible(sae, organism.cfg)
    tokens = TaskSuite(seed=0).training_rows(1, 20_000_000)[:, :32]
    with torch.no_grad():
        clean = organism(tokens)
        spliced = organism(tokens, splices=[SAESplice(sae) for sae in saes])
    assert (spliced - clean).abs().max() < 1e-3  # spliced with error terms: output unchanged
    metrics = evaluate_sae(organism, saes[0], [tokens])
    assert metrics.explained_variance > 0.8 and metrics.l0 <= 32
