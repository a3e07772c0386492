"""The node-dataset builder against a brute-force recomputation over the whole corpus, resumption
after a killed build, and what readers accept."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mechscope.datasets.node_dataset import NodeDataset
from mechscope.datasets.node_dataset.builder import BuildMismatchError, build_node_dataset
from mechscope.datasets.node_dataset.config import BuildConfig
from mechscope.datasets.node_dataset.sampling import row_uniforms
from mechscope.datasets.node_dataset.records import DatasetIncompleteError, DatasetIntegrityError, UnknownNodeError
from mechscope.datasets.stores import LocalBlobStore
from mechscope.inference.errors import InvalidInputError

from .node_dataset_helpers import CONFIG, N_CTX, BruteForce, corpus, small_model, small_saes, window_start

NODES = [("mlp_neuron", 0, 0, 17), ("mlp_neuron", 1, 1, 200), ("attn_head", 0, 0, 1), ("attn_head", 1, 1, 3),
         ("sae_latent", 1, "blocks.1.mlp.hook_post", 5), ("sae_latent", 0, "blocks.0.hook_resid_post", 40)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    model, saes, tokens = small_model(), small_saes(), corpus()
    store = LocalBlobStore(tmp_path_factory.mktemp("store"))
    manifest = build_node_dataset(model, tokens, store, "ds", saes=saes, config=CONFIG, progress=False)
    return model, saes, tokens, store, manifest, BruteForce(model, saes, tokens)


def page_of(ds: NodeDataset, kind, layer, key, index):
    return ds.node(kind, layer, index, hook_point=key if kind == "sae_latent" else None)


@pytest.mark.parametrize("kind,layer,key,index", NODES)
def test_top_examples_equal_brute_force(setup, kind, layer, key, index):
    model, saes, tokens, store, manifest, ref = setup
    page = page_of(NodeDataset(store, "ds"), kind, layer, key, index)
    rows, maxima, positions = ref.top_rows(kind, key, index, CONFIG.top_k)
    positive = maxima > 0  # rows of equal (zero) maxima may come in any order
    assert [e.row for e in page.top_examples][:positive.sum()] == rows[positive].tolist()
    np.testing.assert_allclose([e.max_activation for e in page.top_examples], maxima, rtol=1e-4, atol=1e-6)
    acts = ref.node(kind, key, index)
    for example, row, pos, ok in zip(page.top_examples, rows, positions, positive):
        if not ok:
            continue
        start = window_start(int(pos))
        assert example.start == start and example.max_position == pos - start
        assert example.token_ids == tokens[row, start:start + CONFIG.window].tolist()
        assert len(example.tokens) == CONFIG.window
        np.testing.assert_allclose(example.activations, acts[row, start:start + CONFIG.window], rtol=1e-4, atol=1e-6)
        if kind == "attn_head":
            w = ref.pairs[key][row, index, start:start + CONFIG.window, start:start + CONFIG.window]
            np.testing.assert_allclose(example.token_pair_activations, w[np.tril_indices(CONFIG.window)],
                                       rtol=1e-4, atol=1e-6)
        else:
            assert example.token_pair_activations is None


@pytest.mark.parametrize("kind,layer,key,index", NODES)
def test_stats_and_histogram_equal_numpy(setup, kind, layer, key, index):
    *_, store, manifest, ref = setup
    page = page_of(NodeDataset(store, "ds"), kind, layer, key, index)
    x = ref.node(kind, key, index).ravel()
    mean, var = x.mean(), x.var()
    s = page.stats
    assert s.count == x.size == manifest["tokens_seen"]
    np.testing.assert_allclose([s.mean, s.variance], [mean, var], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(s.skewness, ((x - mean) ** 3).mean() / var ** 1.5, rtol=1e-3)
    np.testing.assert_allclose(s.kurtosis, ((x - mean) ** 4).mean() / var ** 2, rtol=1e-3)
    assert s.density == (x > 0).mean()
    np.testing.assert_allclose([s.min, s.max], [x.min(), x.max()], rtol=1e-5)
    h = page.histogram
    counts, _ = np.histogram(x, bins=np.array(h.edges))
    assert h.underflow + sum(h.counts) + h.overflow == x.size
    assert np.abs(np.array(h.counts) - counts).sum() <= 4  # values on a bin edge may round either way
    assert abs(h.overflow - (x >= h.edges[-1]).sum()) <= 2 and abs(h.underflow - (x < h.edges[0]).sum()) <= 2


@pytest.mark.parametrize("kind,layer,key,index", NODES)
def test_samples_follow_their_definition(setup, kind, layer, key, index):
    *_, tokens, store, manifest, ref = setup
    page = page_of(NodeDataset(store, "ds"), kind, layer, key, index)
    acts = ref.node(kind, key, index)
    rowmax = acts.max(1)
    rows = np.arange(len(rowmax))
    # random sample: the rows of smallest seeded priority, the same rows for every node
    prio = row_uniforms(torch.arange(len(rows)), CONFIG.seed, 1).numpy()
    expected = sorted(np.argsort(prio, kind="stable")[:CONFIG.random_samples].tolist())
    assert sorted(e.row for e in page.random_sample) == expected
    for e in page.random_sample:
        np.testing.assert_allclose(e.activations, acts[e.row, e.start:e.start + CONFIG.window], rtol=1e-4, atol=1e-6)
        assert e.token_ids == tokens[e.row, e.start:e.start + CONFIG.window].tolist()
    # quantile samples: boundaries from the first batch's row maxima, smallest priorities per bin
    first = rowmax[:CONFIG.batch_size]
    bounds = np.quantile(first, np.arange(1, CONFIG.quantile_bins) / CONFIG.quantile_bins)
    np.testing.assert_allclose(page.quantile_boundaries, bounds, rtol=1e-4, atol=1e-6)
    bins = np.searchsorted(np.array(page.quantile_boundaries), rowmax.astype(np.float32), side="right")
    qprio = row_uniforms(torch.arange(len(rows)), CONFIG.seed, 3).numpy()
    edges = [-np.inf, *page.quantile_boundaries, np.inf]
    for q, samples in enumerate(page.quantile_samples):
        for e in samples:
            np.testing.assert_allclose(e.max_activation, rowmax[e.row], rtol=1e-4, atol=1e-6)
            assert edges[q] - 1e-6 <= e.max_activation <= edges[q + 1] + 1e-6
        if kind == "attn_head":
            continue  # the float64 reference of write norms may put rows tied at a boundary (BOS) elsewhere
        members = rows[bins == q]
        chosen = members[np.argsort(qprio[members], kind="stable")[:CONFIG.quantile_samples]]
        assert [e.row for e in samples] == chosen.tolist()
    assert sum(len(s) for s in page.quantile_samples) > 0


def test_promoted_tokens_of_a_neuron_and_a_latent(setup):
    model, saes, *_ , store, manifest, ref = setup
    ds = NodeDataset(store, "ds")
    w_u = model.W_U.numpy().astype(np.float64)
    gain = model.ln_f.weight.numpy()
    for page, vector in [
        (ds.node("mlp_neuron", 1, 9), model.h[1].mlp.c_proj.weight[9].numpy()),
        (ds.node("sae_latent", 1, 4, hook_point="blocks.1.mlp.hook_post"),
         saes[0].W_dec[4].numpy() @ model.h[1].mlp.c_proj.weight.numpy()),
        (ds.node("sae_latent", 0, 4), saes[1].W_dec[4].numpy()),
    ]:
        logits = ((vector - vector.mean()) * gain) @ w_u
        assert [t.token_id for t in page.promoted_tokens] == np.argsort(-logits)[:CONFIG.logit_tokens].tolist()
        assert [t.token_id for t in page.suppressed_tokens] == np.argsort(logits)[:CONFIG.logit_tokens].tolist()
        np.testing.assert_allclose([t.value for t in page.promoted_tokens], np.sort(logits)[::-1][:CONFIG.logit_tokens],
                                   rtol=1e-3, atol=1e-6)
    head = ds.node("attn_head", 1, 2)
    assert len(head.promoted_tokens) == CONFIG.logit_tokens and head.promoted_tokens[0].value > 0


def test_manifest_describes_the_build(setup):
    *_, tokens, store, manifest, ref = setup
    ds = NodeDataset(store, "ds")
    assert ds.manifest["model"]["name"] == "tiny" and ds.manifest["tokens_seen"] == tokens.numel()
    assert ds.manifest["config"] == CONFIG.to_dict() and ds.manifest["corpus"]["rows"] == tokens.shape[0]
    groups = {(g["kind"], g["layer"], g["hook_point"]): g["n_nodes"] for g in ds.groups}
    assert groups == {("mlp_neuron", 0, None): 256, ("mlp_neuron", 1, None): 256, ("attn_head", 0, None): 4,
                      ("attn_head", 1, None): 4, ("sae_latent", 1, "blocks.1.mlp.hook_post"): 96,
                      ("sae_latent", 0, "blocks.0.hook_resid_post"): 48}
    assert not list(store.list("ds/_build"))  # checkpoints are gone once the dataset is committed
    ds.verify()
    with pytest.raises(UnknownNodeError, match="out of range"):
        ds.node("mlp_neuron", 0, 256)
    with pytest.raises(UnknownNodeError, match="no attn_head group"):
        ds.node("attn_head", 5, 0)
    with pytest.raises(UnknownNodeError, match="unknown node kind"):
        ds.node("neuron", 0, 0)


def all_blobs(store: LocalBlobStore, prefix: str) -> dict[str, bytes]:
    return {k: store.read(k) for k in store.list(prefix + "/")}


class Killed(Exception):
    pass


def test_killed_build_resumes_to_identical_bytes(setup, tmp_path):
    model, saes, tokens, store, manifest, ref = setup
    killed = LocalBlobStore(tmp_path / "killed")

    def kill_after(batches_done: int) -> None:
        if batches_done == 3:
            raise Killed

    with pytest.raises(Killed):
        build_node_dataset(model, tokens, killed, "ds", saes=saes, config=CONFIG, progress=False, on_batch=kill_after)
    assert killed.exists("ds/_build/checkpoint.json") and not killed.exists("ds/manifest.json")
    assert json.loads(killed.read("ds/_build/checkpoint.json"))["batches_done"] == 2
    with pytest.raises(DatasetIncompleteError, match="manifest.json is missing"):
        NodeDataset(killed, "ds")

    seen = []
    build_node_dataset(model, tokens, killed, "ds", saes=saes, config=CONFIG, progress=False, on_batch=seen.append)
    assert seen[0] == 3  # resumed after the checkpoint of batch 2, not from the start
    assert all_blobs(killed, "ds") == all_blobs(store, "ds")


def test_resume_refuses_a_checkpoint_of_another_build(setup, tmp_path):
    model, saes, tokens, *_ = setup
    target = LocalBlobStore(tmp_path / "s")

    def kill(batches_done: int) -> None:
        if batches_done == 2:
            raise Killed

    with pytest.raises(Killed):
        build_node_dataset(model, tokens, target, "ds", config=CONFIG, progress=False, on_batch=kill)
    other = BuildConfig(**{**CONFIG.to_dict(), "top_k": 4})
    with pytest.raises(BuildMismatchError, match="different build"):
        build_node_dataset(model, tokens, target, "ds", config=other, progress=False)
    manifest = build_node_dataset(model, tokens, target, "ds", config=other, progress=False, resume=False)
    assert manifest["config"]["top_k"] == 4
    with pytest.raises(BuildMismatchError, match="overwrite"):
        build_node_dataset(model, tokens, target, "ds", config=CONFIG, progress=False)


def test_reader_rejects_half_written_or_mismatched_datasets(setup, tmp_path):
    *_, store, manifest, ref = setup
    copy = LocalBlobStore(tmp_path / "copy")
    for key, data in all_blobs(store, "ds").items():
        copy.write(key, data)
    shard = next(g for g in manifest["groups"] if g["name"] == "mlp_neuron.1")["shard"]["key"]
    good = copy.read(f"ds/{shard}")

    copy.write(f"ds/{shard}", good[:-10])  # truncated shard: size check on first use of the group
    with pytest.raises(DatasetIntegrityError, match="manifest says"):
        NodeDataset(copy, "ds").node("mlp_neuron", 1, 0)
    NodeDataset(copy, "ds").node("mlp_neuron", 0, 0)  # other groups still read

    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    copy.write(f"ds/{shard}", bytes(flipped))  # same size, different bytes: record checksum / sha256
    ds = NodeDataset(copy, "ds")
    with pytest.raises(DatasetIntegrityError):
        for i in range(256):
            ds.node("mlp_neuron", 1, i)
    with pytest.raises(DatasetIntegrityError, match="sha256"):
        ds.verify()

    copy.delete("ds/manifest.json")
    with pytest.raises(DatasetIncompleteError, match="never built, or its build has not finished"):
        NodeDataset(copy, "ds")


def test_bad_inputs_are_named(setup, tmp_path):
    model, *_ = setup
    store = LocalBlobStore(tmp_path)
    with pytest.raises(InvalidInputError, match="window=16 exceeds"):
        build_node_dataset(model, torch.zeros(4, 8, dtype=torch.long), store, "x", config=CONFIG, progress=False)
    with pytest.raises(InvalidInputError, match="top_k must be a positive integer, got 0"):
        BuildConfig(top_k=0)
    with pytest.raises(InvalidInputError, match="LongTensor"):
        build_node_dataset(model, torch.zeros(4, N_CTX), store, "x", config=CONFIG, progress=False)
    with pytest.raises(InvalidInputError, match="SAE latents need saes"):
        build_node_dataset(model, corpus(4), store, "x", config=BuildConfig(kinds=("sae_latent",)), progress=False)


def test_both_statistics_paths_are_exercised(setup):
    *_, ref = setup
    sparse = (ref.acts[("sae_latent", "blocks.1.mlp.hook_post")] == 0).mean()
    dense = (ref.acts[("sae_latent", "blocks.0.hook_resid_post")] == 0).mean()
    assert sparse > 0.6 and dense < 0.5, (sparse, dense)
