"""The vectorized node table against plain per-prompt, per-node loops written from its definition."""

from __future__ import annotations

import math

import pytest
import torch

from mechscope.activation_server.engine.node_table import COLUMNS, NodeGroup, node_table, node_tables
from mechscope.activation_server.engine.predictions import predictions
from mechscope.activation_server.engine.top_k import row_top_k
from mechscope.activation_server.engine.prompts import PreparedPrompts


def as_float32(values: list[float]) -> list[float]:
    """What a float32 reader makes of the answer's numbers (they are printed with 9 digits)."""
    return torch.tensor(values, dtype=torch.float32).tolist()


def _prepared(lengths: list[int], slots: list[list[int]]) -> PreparedPrompts:
    width = max(lengths)
    mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
    return PreparedPrompts(torch.zeros(len(lengths), width, dtype=torch.long), mask, lengths,
                           [[0] * n for n in lengths], slots)


def _groups(batch: int, width: int, lengths: list[int], seed: int = 0, latents: int = 5) -> list[NodeGroup]:
    gen = torch.Generator().manual_seed(seed)

    def values(*shape, valid):
        return {c: torch.where(valid, torch.randn(batch, *shape, generator=gen), math.nan) for c in COLUMNS}

    pos_ok = torch.tensor([[p < n for p in range(width)] for n in lengths])
    pair_ok = pos_ok[:, None, :, None] & pos_ok[:, None, None, :] & torch.ones(width, width, dtype=torch.bool).tril()
    pair_ok = pair_ok.expand(batch, 3, width, width)
    prob = torch.rand(batch, 3, width, width, generator=gen)
    return [NodeGroup("embedding", None, None, values(width, valid=pos_ok)),
            NodeGroup("attn_head", 0, None, values(3, width, width, valid=pair_ok), attention_prob=prob),
            NodeGroup("mlp_neuron", 0, None, values(width, 7, valid=pos_ok[..., None].expand(batch, width, 7))),
            NodeGroup("sae_latent", 1, "blocks.1.hook_mlp_out",
                  values(width, latents, valid=pos_ok[..., None].expand(batch, width, latents)))]


def _nodes_by_loops(groups, prepared, top_k):
    """Per column and prompt, the top (and bottom) k finite values; node = (group, index, slot_q, slot_k)."""
    chosen = set()
    for col in COLUMNS:
        for i in range(prepared.batch):
            entries = []
            for gid, b in enumerate(groups):
                v = b.values[col][i]
                for coords in torch.cartesian_prod(*[torch.arange(s) for s in v.shape]).reshape(-1, v.dim()).tolist():
                    x = float(v[tuple(coords)])
                    if math.isnan(x):
                        continue
                    if b.kind == "attn_head":
                        index, q, k = coords
                    elif len(coords) == 1:
                        index, q, k = 0, coords[0], None
                    else:
                        q, index = coords
                        k = None
                    slot_k = prepared.slots[i][k] if k is not None else None
                    entries.append((x, (gid, index, prepared.slots[i][q], slot_k)))
            entries.sort(key=lambda e: e[0])
            picked = entries[-top_k:] + ([] if col == "write_magnitude" else entries[:top_k])
            chosen |= {node for _, node in picked}
    return chosen


def _slots_of(key: str) -> tuple[int, int | None]:
    parts = key.split(":")
    slot_q = next(int(x[1:]) for x in parts if x.startswith("@"))
    slot_k = next((int(x[1:]) for x in parts if x.startswith("k")), None)
    return slot_q, slot_k


@pytest.mark.parametrize("top_k, latents", [(1, 5), (4, 5), (500, 5), (3, 1200)])   # 1200: > 6,000 nodes
def test_node_table_matches_per_prompt_loops(top_k, latents):
    lengths, width = [5, 3], 5
    slots = [[-1, 0, 1, 2, 3], [0, 2, 3]]     # explicit alignment: prompt 1 lacks slot 1; prompt 0 has an unmapped position
    prepared = _prepared(lengths, slots)
    groups = _groups(2, width, lengths, latents=latents)
    rows = node_table(groups, prepared, top_k)

    want = _nodes_by_loops(groups, prepared, top_k)
    assert len(rows) == len({r["key"] for r in rows}) == len(want)
    for row in rows:
        slot_q, slot_k = _slots_of(row["key"])
        gid = next(j for j, b in enumerate(groups) if b.kind == row["kind"] and b.layer == row["layer"])
        assert (gid, row["index"], slot_q, slot_k) in want
        for i, slots in enumerate(prepared.slots):
            assert row["positions"][i] == (slots.index(slot_q) if slot_q in slots else None)
        group = next(b for b in groups if b.kind == row["kind"] and b.layer == row["layer"])
        for i, (q, k, v) in enumerate(zip(row["positions"], row["key_positions"] or [None] * 2, row["values"])):
            if v is None:
                continue
            if group.kind == "attn_head":
                coords = (row["index"], q, k)
            elif group.kind == "embedding":
                coords = (q,)
            else:
                coords = (q, row["index"])
            for col in COLUMNS:
                assert v[col] == pytest.approx(float(group.values[col][i][coords]), abs=1e-6)
            if group.kind == "attn_head":
                assert v["attention_prob"] == pytest.approx(float(group.attention_prob[i][coords]), abs=1e-6)
            else:
                assert v["attention_prob"] is None
    # most total effect (on any prompt) first
    best = [max((abs(v["total_effect"]) for v in r["values"] if v is not None), default=0.0) for r in rows]
    assert best == sorted(best, reverse=True)


def test_requests_sharing_a_batch_each_get_their_own_table():
    # several requests' prompts in one batch (as the server's shared passes): each request's table
    # is the one its prompts give alone, ties included (values rounded to halves: thousands tie)
    lengths, width = [5, 3, 4, 2, 5], 5
    slots = [[0, 1, 2, 3, 4], [0, 1, 2], [1, 2, 3, 4], [3, 4], [0, 1, 2, 3, 4]]
    prepared = _prepared(lengths, slots)
    groups = _groups(5, width, lengths, seed=5, latents=1200)
    for b in groups:
        b.values = {c: (v * 2).round() / 2 for c, v in b.values.items()}
    requests = [(range(0, 2), 3), (range(2, 4), 7), (range(4, 5), 3)]
    tables = node_tables(groups, prepared, requests)
    for (rows, k), table in zip(requests, tables):
        r = slice(rows.start, rows.stop)
        alone = PreparedPrompts(prepared.tokens[r], prepared.mask[r], lengths[r], prepared.token_ids[r], slots[r])
        assert table == node_table([b.rows(r) for b in groups], alone, k)
        assert len(table) > 2 * k


def test_node_table_of_a_node_missing_on_one_prompt_has_none_there():
    lengths, width = [4, 2], 4
    prepared = _prepared(lengths, [[0, 1, 2, 3], [2, 3]])   # prompt 1 has only slots 2, 3
    rows = node_table(_groups(2, width, lengths, seed=3), prepared, 500)
    at_slot_0 = [r for r in rows if r["key"].endswith("@0") and r["kind"] != "attn_head"]
    assert at_slot_0 and all(r["values"][1] is None and r["positions"][1] is None for r in at_slot_0)
    assert all(r["values"][0] is not None and r["positions"][0] == 0 for r in at_slot_0)


def _rows_to_rank(rows: int, n: int, seed: int) -> torch.Tensor:
    """Rows of ``n`` values: Gaussian; integers in [-3, 3] (every value tied thousands of times);
    mostly zeros (as sparse latents); Gaussian with infinities; Gaussian with the best values in the
    last, partial chunk."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, n, generator=gen)
    if rows > 1:
        x[1] = torch.randint(-3, 4, (n,), generator=gen).float()
    if rows > 2:
        x[2] = torch.where(torch.rand(n, generator=gen) < 0.85, 0.0, x[2])
    if rows > 3:
        x[3, torch.randint(0, n, (30,), generator=gen)] = math.inf
        x[3, torch.randint(0, n, (30,), generator=gen)] = -math.inf
    if rows > 4:
        x[4, -3:] = torch.tensor([9.0, 8.0, -9.0])
    return x


@pytest.mark.parametrize("n", [10, 5119, 64 * 90, 37950, 50257])   # small and vocabulary-sized rows
@pytest.mark.parametrize("k", [1, 10, 20])
def test_row_top_k_is_the_start_of_a_stable_sort(n, k):
    x = _rows_to_rank(5, n, seed=n + k)
    # all rows at once, and each alone: a batch without ties across the k-th place (the Gaussian
    # rows alone) takes top-k's own answer, one with such a tie anywhere the tie-breaking path
    for rows in (x, *x.split(1)):
        for largest in (True, False):
            got = row_top_k(rows, k, largest)
            want = torch.sort(rows, dim=1, descending=largest, stable=True)     # ties: lower index first
            assert torch.equal(got.values, want.values[:, :k])
            assert torch.equal(got.indices, want.indices[:, :k])


@pytest.mark.parametrize("vocab", [300, 50257])     # 50257: GPT-2's vocabulary
def test_predictions_match_brute_force_ranks_and_probabilities_with_ties(vocab):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randint(-5, 6, (4, vocab), generator=gen).float()  # many ties, in the top and the bottom
    logits[1, 17] = 50.0                                                 # a single clear winner
    logits[2, [3, 40, 41]] = -50.0                                       # tied lowest, below the bottom-k's largest
    logits[3] = torch.randn(vocab, generator=gen)                        # no ties
    extra = [[17, 4, vocab - 1], [17], [], [vocab - 1, 0]]              # each row its own
    got = predictions(logits, extra, k=10)
    for row, row_extra, (top, bottom, targets) in zip(logits, extra, got):
        probs = row.softmax(-1)
        ordered = sorted(row.tolist(), reverse=True)
        assert as_float32([p["logit"] for p in top]) == ordered[:10]        # printed short, the same float32
        assert as_float32([p["logit"] for p in bottom]) == sorted(row.tolist())[:10]
        assert [p["token_id"] for p in targets] == row_extra
        assert len({p["token_id"] for p in top}) == 10 and len({p["token_id"] for p in bottom}) == 10
        for p in top + bottom + targets:
            t = p["token_id"]
            assert as_float32([p["logit"]]) == [float(row[t])]
            assert p["rank"] == 1 + int((row > row[t]).sum())
            assert p["prob"] == pytest.approx(float(probs[t]), rel=1e-5)
