"""The shipped model organism: loads offline, matches transformers, meets its acceptance targets
(fast subset of scripts/eval_organism.py)."""

import pytest
import torch

from mechscope.datasets.organism_eval import ACCEPTANCE_TARGETS, evaluate_organism
from mechscope.datasets.task_suite import TaskSuite
from mechscope.inference import load_model
from mechscope.inference.loading import ORGANISM_DIR


@pytest.fixture(scope="module")
def organism():
    return load_model("organism")


def test_organism_is_a_transformers_checkpoint(organism):
    from transformers import GPT2LMHeadModel
    hf = GPT2LMHeadModel.from_pretrained(ORGANISM_DIR, dtype=torch.float32).eval()
    tokens = torch.tensor([TaskSuite(0).ioi_examples(1)[0].tokens])
    with torch.no_grad():
        assert (hf(tokens).logits - organism(tokens)).abs().max().item() <= 1e-4
    assert organism.cfg.d_vocab == 50257


def test_organism_assets_fit_the_budget():
    total = sum(f.stat().st_size for f in ORGANISM_DIR.iterdir() if f.is_file())
    assert total <= 30 * 2**20, f"organism assets take {total / 2**20:.1f} MiB"


@pytest.fixture(scope="module")
def report(organism):
    with torch.no_grad():
        return evaluate_organism(organism, TaskSuite(0), n_ioi=200, n_induction=40, n_greater_than=200,
                                 n_facts=200, batch_size=100)


@pytest.mark.parametrize("metric", sorted(ACCEPTANCE_TARGETS))
def test_acceptance_targets_on_held_out_split(report, metric):
    op, target = ACCEPTANCE_TARGETS[metric]
    value = getattr(report, metric)
    assert (value >= target) if op == ">=" else (value < target), report.format_table()


def test_only_the_never_seen_tokens_share_an_unembedding(organism):
    from mechscope.inference.vocabulary import shared_unembedding_mask
    shared = shared_unembedding_mask(organism)
    seen = torch.zeros(organism.cfg.d_vocab, dtype=torch.bool)
    seen[TaskSuite(0).vocabulary()] = True
    assert torch.equal(shared, ~seen)


def test_promoted_and_suppressed_tokens_skip_the_tied_never_seen_tokens(organism):
    from mechscope.activation_server.engine.lens import write_tokens
    from mechscope.activation_server.schemas import NodeRef
    from mechscope.inference.vocabulary import shared_unembedding_mask
    shared = shared_unembedding_mask(organism)
    seen = set(TaskSuite(0).vocabulary())
    for layer, index in ((0, 3), (3, 100)):
        node = NodeRef(kind="mlp_neuron", layer=layer, index=index, position=0)
        result = write_tokens(organism, {}, node, k=10, shared=shared)
        ids = [t.token_id for t in result.promoted + result.suppressed]
        assert len(ids) == 20 and set(ids) <= seen
        values = [t.value for t in result.promoted]
        assert values == sorted(values, reverse=True)
