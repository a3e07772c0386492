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
    assert organism.cfg.vocab_size == 50257


def test_organism_assets_fit_the_budget():
    total = sum(f.stat().st_size for f in ORGANISM_DIR.iterdir() if f.is_file())
    assert total <= 30 * 2**20, f"organism assets take {total / 2**20:.1f} MiB"


@pytest.fixture(scope="module")
def report(organism):
    with torch.no_grad():
        return evaluate_organism(organism, TaskSuite(0), n_ioi=200, n_induction=40, n_greater_than=200,
                                 n_facts=200, batch_size=100)


# Known gaps of the shipped organism (issue 3 stays open until a retrain closes them); strict, so the
# suite fails as soon as a retrain meets them and the marker must go.
KNOWN_SHORTFALLS = {
    "ioi_io_beats_s_rate": "held-out IOI: IO > S on 79% of prompts (logit diff 3.1 meets its target)",
    "fact_top1": "held-out fact frames: capitals 99%, but languages/continents ~34%",
}


@pytest.mark.parametrize("metric", [
    pytest.param(m, marks=pytest.mark.xfail(reason=KNOWN_SHORTFALLS[m], strict=True)) if m in KNOWN_SHORTFALLS else m
    for m in sorted(ACCEPTANCE_TARGETS)])
def test_acceptance_targets_on_held_out_split(report, metric):
    op, target = ACCEPTANCE_TARGETS[metric]
    value = getattr(report, metric)
    assert (value >= target) if op == ">=" else (value < target), report.format_table()
