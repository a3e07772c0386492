#!/usr/bin/env python
"""How well the node table's estimated total effects predict real ablations on the organism
(issue 23): for each task (IOI in both name orders, induction, facts, greater-than), node kind
(heads, neurons, SAE latents) and estimate (final LayerNorm scale frozen / live), the Spearman and
Pearson correlations between the estimate and the true zero- and mean-ablation effects over the
estimate's own top 50 nodes (by |estimate|: the rows a researcher would ablate), and the
false-negative rate (a node whose true effect is among the top 10 while its estimate ranks
outside the top 50). ``live_softmax``: linear up to the logits, exact output softmax (engine/logit_space.py; the
request's ``total_effect_softmax``; log_prob losses only, the live estimate for a logit difference).
``live_qk``: the live estimate plus AtP*'s attention-softmax correction
(engine/qk_correction.py); ``live+graddrop``: false negatives when a node counts as found in the live
top 50 *or* the GradDrop top 50 (engine/graddrop.py; its correlations are the live estimate's).

    python scripts/eval_attribution.py [--prompts 3] [--top 50] [--pool 200] [--threads 2] [--json out.json]

Nodes: heads are a head's whole output at one query (``attn.hook_z``; the estimate sums the table's
(query, key) pairs of that query, exactly the first-order effect of zeroing the output); neurons
and latents are the table's own nodes (one per position). True effects are measured for every head
and, for neurons and latents (tens of thousands per prompt), for a pool: the union of each
estimate's (and GradDrop's) top ``--pool`` nodes. The false-negative rate takes the true top 10 within that pool
(a node outside every estimate's top ``--pool`` cannot be seen). Each cell is the mean over
``--prompts`` held-out prompts per task.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import defaultdict

import torch
from tqdm import tqdm

from mechscope.activation_server.engine.engine import Engine
from mechscope.activation_server.engine.exact_effects import AblatedNode, exact_effects
from mechscope.activation_server.engine.graddrop import dropped_estimates, graddrop_score
from mechscope.activation_server.engine.logit_space import logit_changes, softmax_estimate, softmax_tokens
from mechscope.activation_server.engine.qk_correction import qk_corrections
from mechscope.activation_server.engine.shared_passes import node_tensors, plan_request
from mechscope.activation_server.schemas import AttributionRequest, LossSpec, PromptSpec
from mechscope.autoencoders.organism_saes import load_organism_saes
from mechscope.datasets.task_suite import TaskSuite
from mechscope.inference import gpt2_tokenizer, load_model

MODES = ("frozen", "live")
ESTIMATES = (*MODES, "live_qk")   # live_qk: live + AtP*'s softmax correction (engine/qk_correction.py)
KINDS = ("heads", "neurons", "latents")


def task_prompts(n: int) -> dict[str, list[tuple[PromptSpec, LossSpec]]]:
    """Per task, ``n`` held-out (prompt, loss) pairs, built as the circuit tests build them."""
    tok, suite = gpt2_tokenizer(), TaskSuite(0)

    def prompt(tokens) -> PromptSpec:
        bos = tokens[0] == tok.eot_token_id
        return PromptSpec(text=tok.decode(list(tokens[1:] if bos else tokens)), prepend_bos=bos)

    out: dict[str, list] = defaultdict(list)
    for ex in suite.ioi_examples(2 * n):
        out[f"ioi_{ex.order}"].append((prompt(ex.tokens), LossSpec(targets=[tok.token_str(ex.io_token)],
                                                                    distractors=[tok.token_str(ex.s_token)])))
    for ex in suite.induction_examples(n, span_length=6):
        end = ex.repeat_start + ex.span_length - 1
        out["induction"].append((prompt(ex.tokens[:end]), LossSpec(kind="log_prob",
                                                                   targets=[tok.token_str(ex.tokens[end])])))
    facts = suite.fact_examples()
    for ex in facts[:: max(1, len(facts) // n)][:n]:
        out["facts"].append((prompt(ex.tokens), LossSpec(kind="log_prob", targets=[tok.token_str(ex.answer_token)])))
    for ex in suite.greater_than_examples(n):
        years = [tok.token_str(t) for t in ex.year_tokens]
        out["greater_than"].append((prompt(ex.tokens), LossSpec(
            targets=[y for y, ok in zip(years, ex.valid) if ok], distractors=[y for y, ok in zip(years, ex.valid) if not ok])))
    return out


def estimates(engine: Engine, spec: PromptSpec, loss: LossSpec, kind: str):
    """Per mode, the estimate of every node of ``kind`` ``[nodes]``; the nodes; and the pass (of the
    last mode) for the true effects."""
    side = "latents" if kind == "latents" else "neurons"
    out, nodes, t = {}, None, None
    for mode in MODES:
        request = AttributionRequest(prompts=[spec], loss=loss, mlp=side, attention="latents" if kind == "latents" else "heads",
                                     total_effect_ln=mode)
        t = node_tensors(engine, request)
        values, found = [], []
        for g in t.groups:
            te = g.values["total_effect"][0]
            if kind == "heads" and g.kind == "attn_head":          # [H, Q, K] -> per head at each query
                per_query = te.nan_to_num().sum(-1)
                values.append(per_query.flatten())
                found += [AblatedNode("attn_head", g.layer, h, None, (q,)) for h in range(te.shape[0])
                          for q in range(te.shape[1])]
            elif (kind, g.kind) in (("neurons", "mlp_neuron"), ("latents", "sae_latent")):   # [N, index]
                values.append(te.flatten())
                found += [AblatedNode(g.kind, g.layer, i, g.sae, (p,)) for p in range(te.shape[0])
                          for i in range(te.shape[1])]
        out[mode], nodes = torch.cat(values).nan_to_num(), found
    return out, nodes, t, request


def graddrop(engine: Engine, planned, kind: str) -> torch.Tensor:
    """The GradDrop score of every node of ``kind``, in :func:`estimates`' order."""
    values = []
    for g in dropped_estimates(engine, planned):
        d = g.values["dropped"][:, 0]                                   # [L, *shape]
        if kind == "heads" and g.kind == "attn_head":
            values.append(graddrop_score(d.nan_to_num().sum(-1), g.layer).flatten())
        elif (kind, g.kind) in (("neurons", "mlp_neuron"), ("latents", "sae_latent")):
            values.append(graddrop_score(d, g.layer).flatten())
    return torch.cat(values).nan_to_num()


def _per_node(groups, kind: str, column: str) -> torch.Tensor:
    """``[rows, nodes]``: a column with a leading row axis, flattened in :func:`estimates`' order."""
    values = []
    for g in groups:
        v = g.values[column]
        if kind == "heads" and g.kind == "attn_head":
            values.append(v.nan_to_num().sum(-1).flatten(1))
        elif (kind, g.kind) in (("neurons", "mlp_neuron"), ("latents", "sae_latent")):
            values.append(v.flatten(1))
    return torch.cat(values, 1).nan_to_num()


def softmax_estimates(engine: Engine, planned, t, loss: LossSpec, kind: str) -> torch.Tensor:
    """Linear up to the logits, exact softmax (engine/logit_space.py), for a log_prob loss."""
    tokens = softmax_tokens(t.logits[0], loss)
    contributions = _per_node([dataclasses.replace(g, values={"logits": g.values["logits"][:, 0]})
                               for g in logit_changes(engine, planned, [tokens])], kind, "logits")
    return softmax_estimate(contributions, t.logits[0], tokens, loss)


def true_effects(engine: Engine, t, loss: LossSpec, nodes: list[AblatedNode], mode: str, chunk: int = 256) -> torch.Tensor:
    splice = sorted({g.sae for g in t.groups if g.sae})
    parts = [exact_effects(engine, t.prepared, [], splice, loss, t.loss_positions, nodes[i:i + chunk], mode)[:, 0]
             for i in range(0, len(nodes), chunk)]
    return torch.cat(parts)


def _rank(x: torch.Tensor) -> torch.Tensor:
    return x.argsort().argsort().double()


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    d = a.norm() * b.norm()
    return float(a @ b / d) if d > 0 else float("nan")


def _ranks(score: torch.Tensor) -> torch.Tensor:
    order = score.abs().argsort(descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    return rank


def cell_metrics(estimate: torch.Tensor, pool: torch.Tensor, true: torch.Tensor, top: int,
                 also: torch.Tensor | None = None) -> dict:
    """``estimate`` over all nodes; ``true`` over the node indices ``pool``. ``also``: a second
    score (GradDrop) whose top ``top`` count as found too (false-negative rate only)."""
    order = estimate.abs().argsort(descending=True)
    rank = _ranks(estimate)
    if also is not None:
        rank = torch.minimum(rank, _ranks(also))
    where = {int(n): i for i, n in enumerate(pool)}
    chosen = [int(n) for n in order[:top]]
    est, tru = estimate[chosen], true[[where[n] for n in chosen]]
    true_top = pool[true.abs().argsort(descending=True)[:10]]
    return {"spearman": _corr(_rank(est), _rank(tru)), "pearson": _corr(est, tru),
            "false_negatives": float((rank[true_top] >= top).double().mean())}


def evaluate(engine: Engine, prompts: dict, top: int, pool_size: int) -> dict:
    cells: dict[tuple, list[dict]] = defaultdict(list)
    jobs = [(task, spec, loss, kind) for task, pairs in prompts.items() for spec, loss in pairs for kind in KINDS]
    for task, spec, loss, kind in tqdm(jobs, desc="prompts x node kinds"):
        est, nodes, t, live_request = estimates(engine, spec, loss, kind)
        planned = plan_request(engine, live_request)
        drop = graddrop(engine, planned, kind)
        est["live_softmax"] = softmax_estimates(engine, planned, t, loss, kind) if loss.kind == "log_prob" else est["live"]
        if kind == "heads":
            pool = torch.arange(len(nodes))
        else:
            pool = torch.cat([e.abs().topk(min(pool_size, len(e))).indices for e in (*est.values(), drop)]).unique()
        picked = [nodes[int(i)] for i in pool]
        # the softmax correction for the pool (the rest keep their live estimate)
        corrected = est["live"].clone()
        corrected[pool] += qk_corrections(engine, planned, picked)[:, 0].nan_to_num()
        est["live_qk"] = corrected
        for ablation in ("zero", "mean"):
            true = true_effects(engine, t, loss, picked, ablation)
            for mode, e in est.items():
                cells[(task, kind, mode, ablation)].append(cell_metrics(e, pool, true, top))
            # GradDrop: a node is found when it is in the live top 50 or the GradDrop top 50
            found = cell_metrics(est["live"], pool, true, top, also=drop)
            cells[(task, kind, "live+graddrop", ablation)].append(found)
    return {key: {m: sum(c[m] for c in runs) / len(runs) for m in runs[0]} | {"prompts": len(runs)}
            for key, runs in cells.items()}


def print_table(results: dict) -> None:
    print(f"{'task':<13}{'kind':<9}{'estimate':<15}{'ablation':<9}{'spearman':>9}{'pearson':>9}{'FN rate':>9}")
    for (task, kind, mode, ablation), m in sorted(results.items()):
        print(f"{task:<13}{kind:<9}{mode:<15}{ablation:<9}{m['spearman']:>9.3f}{m['pearson']:>9.3f}"
              f"{m['false_negatives']:>9.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=3, help="held-out prompts per task")
    p.add_argument("--top", type=int, default=50)
    p.add_argument("--pool", type=int, default=200, help="neurons / latents measured per estimate")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the cells here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    engine = Engine(load_model("organism"), list(load_organism_saes()))
    t0 = time.time()
    results = evaluate(engine, task_prompts(args.prompts), args.top, args.pool)
    print_table(results)
    print(f"({time.time() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"task": k[0], "kind": k[1], "estimate": k[2], "ablation": k[3], **v} for k, v in results.items()],
                      f, indent=1)


if __name__ == "__main__":
    main()
