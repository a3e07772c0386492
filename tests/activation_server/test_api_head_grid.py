"""The head grid: direct effects per head against the node table's pair rows, ablation effects
against a zero-ablation of the head's output done by hand."""

import torch

from mechscope.activation_server.engine.head_grid import head_grid
from mechscope.activation_server.schemas import AttributionRequest, HeadGridRequest, LossSpec, PromptSpec

from .conftest import IOI

LOSS = LossSpec(targets=[" Mary"], distractors=[" John"])


def test_direct_effects_sum_the_head_rows_and_ablation_matches_a_manual_zeroing(engine):
    grid = head_grid(engine, HeadGridRequest(prompt=IOI, loss=LOSS))
    cfg = engine.model.cfg
    assert len(grid.direct_effect) == cfg.n_layers and len(grid.direct_effect[0]) == cfg.n_heads
    # every (query, key) pair of every head: a top_k large enough to list them all
    table = engine.attribute(AttributionRequest(prompts=[PromptSpec(text=IOI)], loss=LOSS, top_k=10_000))
    sums = torch.zeros(cfg.n_layers, cfg.n_heads)
    for row in table.nodes:
        if row.kind == "attn_head":
            sums[row.layer, row.index] += row.values[0].direct_effect
    assert torch.allclose(torch.tensor(grid.direct_effect), sums, atol=1e-4)
    assert abs(grid.loss - table.prompts[0].loss) < 1e-4
    # the ablation effect of one head, recomputed: loss(clean) - loss(head zeroed at every position)
    ablated = engine.attribute(AttributionRequest(prompts=[PromptSpec(text=IOI, interventions=[
        {"node": {"kind": "attn_head", "layer": 1, "index": 2, "position": p}, "mode": "zero"}
        for p in range(len(table.prompts[0].tokens))])], loss=LOSS, top_k=1))
    assert abs(grid.ablation_effect[1][2] - (table.prompts[0].loss - ablated.prompts[0].loss)) < 1e-4
