"""Partial node-dataset builds (shards of batches built apart) merge into exactly the bytes of the
one-process build, whatever the shard size, the merge order and the grouping (no Ray needed)."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
import torch

from mechscope.datasets.node_dataset.builder import BuildMismatchError, NodeDatasetBuilder, build_node_dataset
from mechscope.datasets.node_dataset.corpus import TensorCorpus
from mechscope.datasets.node_dataset.distributed import (BuildJob, DistributedBuild, ModelSource, RayUnavailableError,
                                                          ShardPlan, ShardWorker, calibrate, require_ray, stream_batches)
from mechscope.datasets.node_dataset.config import BuildConfig
from mechscope.datasets.node_dataset.merge import PartialBuild, ShardMismatchError
from mechscope.datasets.node_dataset.tree_sum import blocks_of, blocks_total, insert_block, levels_for, tree_add
from mechscope.datasets.stores import LocalBlobStore
from mechscope.inference.errors import InvalidInputError

from .node_dataset_helpers import CONFIG, corpus, small_model, small_saes


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    model, saes, tokens = small_model(), small_saes(), corpus()  # 44 rows: 6 batches, the last of 4 rows
    store = LocalBlobStore(tmp_path_factory.mktemp("reference"))
    build_node_dataset(model, tokens, store, "ds", saes=saes, config=CONFIG, progress=False)
    return model, saes, tokens, blobs(store)


def blobs(store: LocalBlobStore) -> dict[str, bytes]:
    return {k: store.read(k) for k in store.list("ds/")}


def builder_at(setup, path) -> NodeDatasetBuilder:
    model, saes, tokens, _ = setup
    return NodeDatasetBuilder(model, tokens, LocalBlobStore(path), "ds", saes=saes, config=CONFIG, progress=False)


def random_merge(parts: list[PartialBuild], rng: random.Random) -> PartialBuild:
    """Merge in a random order and a random grouping (a random binary tree over shuffled parts)."""
    parts = parts[:]
    rng.shuffle(parts)
    while len(parts) > 1:
        i = rng.randrange(len(parts) - 1)
        a, b = parts[i], parts.pop(i + 1)
        parts[i] = a.merge(b) if rng.random() < 0.5 else b.merge(a)
    return parts[0]


def finalize(builder: NodeDatasetBuilder, merged: PartialBuild) -> dict[str, bytes]:
    builder.states, builder.shared = merged.finished(builder.num_batches)
    builder._finalize()
    return blobs(builder.store)


@pytest.mark.parametrize("shard_batches,seed", [(1, 0), (1, 1), (2, 2), (4, 3), (8, 4)])
def test_shards_merged_in_any_order_and_grouping_equal_the_one_process_build(setup, tmp_path, shard_batches, seed):
    reference = setup[3]
    builder = builder_at(setup, tmp_path)
    plan = ShardPlan(builder.num_batches, shard_batches)
    calibration = calibrate(builder)
    parts = [stream_batches(builder, *plan.batches(s), calibration) for s in range(plan.num_shards)]
    merged = random_merge(parts, random.Random(seed))
    assert finalize(builder, merged) == reference


def test_serialised_shards_merge_to_the_same_bytes(setup, tmp_path):
    reference = setup[3]
    builder = builder_at(setup, tmp_path)
    plan = ShardPlan(builder.num_batches, 2)
    calibration = calibrate(builder)
    data = [stream_batches(builder, *plan.batches(s), calibration).to_bytes({"shard": s})
            for s in range(plan.num_shards)]
    fresh = lambda: (builder.fresh_states(), builder.shared.__class__(CONFIG, builder.corpus.n_ctx))  # noqa: E731
    loaded = [PartialBuild.from_bytes(d, fresh) for d in data]
    assert [meta for _, meta in loaded] == [{"shard": s} for s in range(plan.num_shards)]
    merged = random_merge([p for p, _ in loaded], random.Random(9))
    assert finalize(builder, merged) == reference


def test_merges_that_cannot_be_exact_are_refused(setup, tmp_path):
    builder = builder_at(setup, tmp_path)
    calibration = calibrate(builder)
    a = stream_batches(builder, 0, 2, calibration)
    b = stream_batches(builder, 1, 2, calibration)
    with pytest.raises(ShardMismatchError, match="merged twice"):
        a.merge(b)
    own = stream_batches(builder, 2, 4)  # calibrated by its own first batch, not the corpus's
    with pytest.raises(ShardMismatchError, match="different calibrations"):
        a.merge(own)
    with pytest.raises(ShardMismatchError, match=r"not all of \[0, 6\)"):
        a.merge(stream_batches(builder, 2, 4, calibration)).finished(6)
    with pytest.raises(InvalidInputError, match="power of two"):
        ShardPlan(6, 3)


def test_tree_sums_do_not_depend_on_grouping_and_are_accurate():
    rng = random.Random(0)
    values = [torch.tensor([rng.uniform(-1, 1) * 10 ** rng.randint(-8, 8) for _ in range(3)], dtype=torch.float64)
              for _ in range(37)]
    levels = torch.zeros(levels_for(37), 3, dtype=torch.float64)
    index = torch.full((levels_for(37),), -1, dtype=torch.long)
    for i, v in enumerate(values):
        tree_add(levels, index, i, v)
    sequential = blocks_total(blocks_of(levels, index), values[0])
    for seed in range(5):
        order = list(range(37))
        random.Random(seed).shuffle(order)
        blocks: dict = {}
        for i in order:
            insert_block(blocks, 0, i, values[i])
        assert torch.equal(blocks_total(blocks, values[0]), sequential)
    exact = [float(sum(Fraction(float(v[j])) for v in values)) for j in range(3)]
    scale = [max(abs(float(v[j])) for v in values) for j in range(3)]
    for got, want, s in zip(sequential.tolist(), exact, scale):
        assert abs(got - want) <= 1e-14 * s
    with pytest.raises(InvalidInputError, match="not the next batch"):
        tree_add(levels.clone(), index.clone(), 40, values[0])


def test_a_ray_build_does_not_resume_another_plan_or_build(setup, tmp_path):
    model, saes, tokens, _ = setup
    job = BuildJob(ModelSource("unused: the driver is given the model"), TensorCorpus(tokens), str(tmp_path), "ds",
                   CONFIG)
    assert DistributedBuild(job, shard_batches=2, model=model, saes=saes)._committed_shards() == {}  # writes the plan
    with pytest.raises(BuildMismatchError, match="shard_batches=2; pass the same"):
        DistributedBuild(job, shard_batches=4, model=model, saes=saes).run()
    other = BuildJob(job.source, job.corpus, job.store, "ds", BuildConfig(**{**CONFIG.to_dict(), "seed": 8}))
    with pytest.raises(BuildMismatchError, match="different build"):
        DistributedBuild(other, shard_batches=2, model=model, saes=saes).run()
    with pytest.raises(InvalidInputError, match="workers must be a positive integer"):
        DistributedBuild(job, workers=0, model=model, saes=saes)


def test_a_worker_with_other_weights_refuses_to_build(tmp_path):
    from mechscope.datasets.node_dataset.corpus import TaskSuiteCorpus
    job = BuildJob(ModelSource("organism"), TaskSuiteCorpus(num_rows=8, n_ctx=32), str(tmp_path), "ds",
                   BuildConfig(batch_size=4, window=16, window_after=4))
    with pytest.raises(BuildMismatchError, match="loaded a different build"):
        ShardWorker(job, "0" * 64, torch.get_num_threads())


def test_without_ray_the_error_names_the_extra(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when Ray is not installed
    with pytest.raises(RayUnavailableError, match=r"mechscope\[distributed\]"):
        require_ray()
