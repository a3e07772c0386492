"""OpenAI neuron-explainer / TDB explanation files: one JSON line per node at
``{base}/explanations/{layer}/{index}.jsonl``, a ``NeuronSimulationResults``::

    {"dataclass_name": "NeuronSimulationResults",
     "neuron_id": {"dataclass_name": "NeuronId", "layer_index": L, "neuron_index": N},
     "scored_explanations": [{"dataclass_name": "ScoredExplanation", "explanation": "...",
        "scored_simulation": {"dataclass_name": "ScoredSimulation",
            "scored_sequence_simulations": [{"dataclass_name": "ScoredSequenceSimulation",
                "simulation": {"dataclass_name": "SequenceSimulation", "tokens": [...],
                               "expected_activations": [...], "activation_scale": "...",
                               "distribution_values": [[...]], "distribution_probabilities": [[...]],
                               "uncalibrated_simulation": null},
                "true_activations": [...], "ev_correlation_score": r, "rsquared_score": ...,
                "absolute_dev_explained_score": ...}, ...],
            "ev_correlation_score": r, "rsquared_score": ..., "absolute_dev_explained_score": ...}}]}

TDB's copy names the per-sequence simulation ``sequence_simulation``; both are read. Older files may
lack ``dataclass_name`` or use ``layer``/``idx`` for the neuron id. mechscope's extra fields (method,
baselines) travel in the ScoredExplanation under ``mechscope`` (readers of the public format ignore
unknown fields only if they tolerate them, so ``export`` can leave them out with ``extras=False``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mechscope.inference.errors import InvalidInputError

from .records import Explanation

RESULTS = "NeuronSimulationResults"
ATTENTION_RESULTS = "AttentionSimulationResults"


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def sequence_simulation(tokens: Sequence[str], predicted: Sequence[float], real: Sequence[float]) -> dict:
    """A ScoredSequenceSimulation of one window (predictions on the simulator's 0-10 scale)."""
    from .scoring import score_simulation
    s = score_simulation([list(real)], [list(predicted)])
    return {"dataclass_name": "ScoredSequenceSimulation",
            "simulation": {"dataclass_name": "SequenceSimulation", "tokens": list(tokens),
                           "expected_activations": [float(x) for x in predicted],
                           "activation_scale": "simulated_normalized_activations",
                           "distribution_values": [[float(x)] for x in predicted],
                           "distribution_probabilities": [[1.0] for _ in predicted],
                           "uncalibrated_simulation": None},
            "true_activations": [float(x) for x in real], "ev_correlation_score": s.ev_correlation_score,
            "rsquared_score": s.rsquared_score, "absolute_dev_explained_score": s.absolute_dev_explained_score}


def to_results(layer: int, index: int, explanations: Sequence[Explanation], *, extras: bool = True,
               sequences: dict[int, list[dict]] | None = None) -> dict:
    """A NeuronSimulationResults object for one node (``sequences``: per explanation position, its
    ScoredSequenceSimulations)."""
    scored = []
    for i, e in enumerate(explanations):
        d = e.details or {}
        entry: dict[str, Any] = {
            "dataclass_name": "ScoredExplanation", "explanation": e.text,
            "scored_simulation": {"dataclass_name": "ScoredSimulation",
                                  "scored_sequence_simulations": (sequences or {}).get(i, []),
                                  "ev_correlation_score": e.score,
                                  "rsquared_score": d.get("rsquared_score"),
                                  "absolute_dev_explained_score": d.get("absolute_dev_explained_score")}}
        if extras:
            entry["mechscope"] = {k: v for k, v in e.to_json().items() if k != "text"}
        scored.append(entry)
    return {"dataclass_name": RESULTS,
            "neuron_id": {"dataclass_name": "NeuronId", "layer_index": int(layer), "neuron_index": int(index)},
            "scored_explanations": scored}


def from_results(data: dict, *, source: str = "") -> tuple[int, int, list[Explanation]]:
    """(layer, index, explanations) of a NeuronSimulationResults (or AttentionSimulationResults) object."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"{source}: expected a JSON object, got {type(data).__name__}", field="explanations")
    name = data.get("dataclass_name", RESULTS)
    if name not in (RESULTS, ATTENTION_RESULTS):
        raise InvalidInputError(f"{source}: dataclass_name is {name!r}, expected {RESULTS!r}", field="dataclass_name")
    node_id = data.get("neuron_id") or data.get("attention_head_id") or {}
    layer = node_id.get("layer_index", node_id.get("layer"))
    index = node_id.get("neuron_index", node_id.get("idx", node_id.get("attention_head_index")))
    if not isinstance(layer, int) or not isinstance(index, int):
        raise InvalidInputError(f"{source}: neuron_id needs integer layer_index and neuron_index, got {node_id!r}",
                                field="neuron_id")
    out = []
    for entry in data.get("scored_explanations") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("explanation"), str):
            raise InvalidInputError(f"{source}: a scored explanation has no 'explanation' text", field="explanation")
        sim = entry.get("scored_simulation") or {}
        extra = entry.get("mechscope") if isinstance(entry.get("mechscope"), dict) else {}
        details = dict(extra.get("details") or {})
        for key in ("rsquared_score", "absolute_dev_explained_score", "roc_auc_score"):
            if _finite(sim.get(key)) is not None:
                details[key] = _finite(sim.get(key))
        sequences = sim.get("scored_sequence_simulations") or []
        if sequences:
            details["scored_sequences"] = len(sequences)
        score = _finite(sim.get("ev_correlation_score"))
        if score is None:
            score = _finite(sim.get("roc_auc_score"))
        out.append(Explanation(text=entry["explanation"], method=extra.get("method", "tdb"),
                               explainer=extra.get("explainer", "tdb"), score=score,
                               scorer=extra.get("scorer", "tdb" if score is not None else None),
                               baselines=extra.get("baselines") or {}, detection=extra.get("detection"),
                               details=details))
    return layer, index, out


def parse_line_file(data: bytes, *, source: str) -> tuple[int, int, list[Explanation]]:
    """A ``{layer}/{index}.jsonl`` file: its first non-empty line (the public files hold one)."""
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            try:
                return from_results(json.loads(line), source=source)
            except json.JSONDecodeError as error:
                raise InvalidInputError(f"{source}: not JSON ({error})", field="explanations") from None
    raise InvalidInputError(f"{source}: empty explanation file", field="explanations")


def dumps(results: dict) -> str:
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        if isinstance(x, np.generic):
            return clean(x.item())
        return x
    return json.dumps(clean(results), ensure_ascii=False)
