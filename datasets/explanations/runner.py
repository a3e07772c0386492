"""Explain and score the nodes of a node dataset, group by group, resumably.

    from mechscope.datasets.explanations import explain_dataset, OfflineExplainer, OfflineSimulator
    report = explain_dataset(NodeDataset(store, "organism"), OfflineExplainer(), OfflineSimulator())

Per group: every requested node is explained from its train examples, then its explanation, a
random other node's explanation (same group) and the empty explanation are scored by the simulator
on its held-out examples; the group's blob is then merged and written once. A group already written
for the same dataset (same fingerprint) is skipped, so a killed run resumes where it stopped; an
error (e.g. the LLM endpoint failing) aborts before the group is written, leaving what was stored
untouched.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from mechscope.inference.errors import InvalidInputError

from .examples import ExampleSplit, split_examples
from .llm import LlmConfig, LlmExplainer, LlmSimulator
from .offline import ExplainerOutput, OfflineExplainer
from .records import Explanation, NodeKey, UnknownExplainerError
from .scorer import OfflineSimulator, Simulator, detection_score, score_text
from .store import ExplanationStore


@dataclass
class ExplainReport:
    explainer: str
    nodes_done: int = 0
    nodes_skipped: int = 0
    seconds: float = 0.0
    groups: list[str] = field(default_factory=list)


def _selected(dataset, nodes: Sequence[NodeKey] | None) -> list[tuple[dict, list[int]]]:  # type: ignore[no-untyped-def]
    out = []
    for g in dataset.groups:
        if nodes is None:
            out.append((g, list(range(g["n_nodes"]))))
            continue
        picked = sorted({n.index for n in nodes if n.kind == g["kind"] and (
            (g["kind"] == "sae_latent" and (n.hook_point or None) in (g["hook_point"], None) and n.layer == g["layer"])
            or (g["kind"] != "sae_latent" and n.layer == g["layer"]))})
        bad = [i for i in picked if not 0 <= i < g["n_nodes"]]
        if bad:
            raise InvalidInputError(f"{g['name']} has {g['n_nodes']} nodes; no node {bad[0]}", field="nodes")
        if picked:
            out.append((g, picked))
    if nodes is not None:
        found = sum(len(i) for _, i in out)
        if found < len({str(n) for n in nodes}):
            names = {g["name"] for g in dataset.groups}
            raise InvalidInputError(f"some of the nodes {[str(n) for n in nodes][:5]} are in no group of the "
                                    f"dataset (groups: {sorted(names)})", field="nodes")
    return out


def explain_dataset(dataset, explainer, simulator: Simulator, *, store: ExplanationStore | None = None,  # type: ignore[no-untyped-def]
                    nodes: Sequence[NodeKey] | None = None, resume: bool = True, workers: int = 1, seed: int = 0,
                    progress: bool = True, on_group: Callable[[str], None] | None = None) -> ExplainReport:
    """Explain and score ``nodes`` (default: every node) of ``dataset``; see the module docs."""
    from tqdm import tqdm
    store = store or ExplanationStore(dataset.store, dataset.prefix)
    dataset_id = dataset.manifest.get("fingerprint")
    report = ExplainReport(explainer.name)
    plan = []
    for group, indices in _selected(dataset, nodes):
        stored_id, stored = store.load_group_doc(explainer.name, group["name"])
        fresh = resume and stored_id == dataset_id
        todo = [i for i in indices if not (fresh and i in stored and nodes is None)]
        report.nodes_skipped += len(indices) - len(todo)
        if todo:
            plan.append((group, todo))
    start = time.perf_counter()
    with tqdm(total=sum(len(t) for _, t in plan), unit="node", desc=f"explain ({explainer.name})",
              disable=not progress, smoothing=0.1) as bar, ThreadPoolExecutor(max(1, workers)) as pool:
        for group, todo in plan:
            done = _explain_group(dataset, store, group, todo, explainer, simulator, pool, seed, bar.update)
            store.merge_group(explainer.name, group, done, dataset_id=dataset_id)
            report.nodes_done += len(done)
            report.groups.append(group["name"])
            if on_group:
                on_group(group["name"])
    report.seconds = time.perf_counter() - start
    return report


def _explain_group(dataset, store, group, todo, explainer, simulator, pool, seed, tick) -> dict[int, Explanation]:  # type: ignore[no-untyped-def]
    kind, layer, hook = group["kind"], group["layer"], group["hook_point"]

    def explain(i: int) -> tuple[ExampleSplit, ExplainerOutput]:
        page = dataset.node(kind, layer, i, hook_point=hook)
        split = split_examples(page)
        return split, explainer.explain(page, split)

    made = dict(zip(todo, pool.map(explain, todo)))
    pool_texts = {i: out.text for i, (_, out) in made.items()}
    for name in store.explainers():  # other nodes' stored explanations serve as random baselines too
        for i, e in store.load_group(name, group["name"]).items():
            pool_texts.setdefault(i, e.text)
    if len(pool_texts) < 2 and group["n_nodes"] > 1:
        other = random.Random(f"{seed}:{group['name']}").choice([j for j in range(group["n_nodes"]) if j not in made])
        pool_texts[other] = explain(other)[1].text
    others = sorted(pool_texts)

    def score(i: int) -> Explanation:
        split, out = made[i]
        rng = random.Random(f"{seed}:{group['name']}:{i}")
        candidates = [j for j in others if j != i]
        j = rng.choice(candidates) if candidates else None
        own, predicted = score_text(simulator, out.text, split.held_out)
        rand = score_text(simulator, pool_texts[j], split.held_out)[0] if j is not None else None
        empty = score_text(simulator, "", split.held_out)[0]
        tick()
        fuzzing = getattr(simulator, "fuzzing", None)
        details = dict(out.details, rsquared_score=own.rsquared_score,
                       absolute_dev_explained_score=own.absolute_dev_explained_score,
                       held_out_windows=len(split.held_out), held_out_tokens=sum(len(w.tokens) for w in split.held_out))
        if j is not None:
            details["random_baseline_node"] = j
        if fuzzing is not None:
            held_top = [w for w, src in zip(split.held_out, split.held_out_sources) if src == "top"]
            details["fuzzing"] = fuzzing.score(out.text, held_top, key=f"{group['name']}:{i}")
        return Explanation(text=out.text, method=out.method, explainer=explainer.name,
                           score=own.ev_correlation_score, scorer=simulator.name,
                           baselines={"random": None if rand is None else rand.ev_correlation_score,
                                      "empty": empty.ev_correlation_score},
                           detection=detection_score(predicted, split.held_out_sources), details=details)

    return dict(zip(todo, pool.map(score, todo)))


def make_explainer(name: str):  # type: ignore[no-untyped-def]
    """(explainer, simulator) for 'offline' or 'llm' (the LLM configured from the environment)."""
    if name == "offline":
        return OfflineExplainer(), OfflineSimulator()
    if name == "llm":
        client = LlmConfig.from_env().client()
        return LlmExplainer(client), LlmSimulator(client)
    raise UnknownExplainerError(f"unknown explainer {name!r}; expected 'offline' or 'llm'", field="explainer")
