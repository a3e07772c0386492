"""Acceptance metrics of the model organism on the task suite's held-out split.

A model is any callable ``logits_fn(tokens: LongTensor[batch, pos]) -> FloatTensor[batch, pos, vocab]``
over the full GPT-2 vocabulary (``vocab >= 50257``; extra padded columns count as unseen tokens).
Prompts of a batch have different lengths: they are padded on the RIGHT with ``<|endoftext|>``
and each row is read only at its own positions, which a causal model computes without looking at
the padding. Calls run under ``torch.no_grad()``.

Definitions (all on the prediction position(s) of each prompt):

* ``ioi_io_beats_s_rate``: fraction of IOI prompts with logit(IO) > logit(S) — the acceptance
  figure ("accuracy" in the IOI paper's sense). ``ioi_accuracy`` is the stricter top-1 over the
  whole vocabulary (ties count as wrong), reported for information. ``ioi_logit_diff``: mean of
  logit(IO) - logit(S).
* ``induction_top1``: top-1 accuracy on the second occurrence of a random span, at every position
  from its first token to its second-to-last (predicting tokens 2..L of the repeat).
  ``induction_top1_unrepeated``: the same positions and targets on the control prompts whose first
  occurrence was replaced by another span (should be near chance).
* ``fact_top1``: top-1 accuracy of the answer's first token.
* ``greater_than_prob_ratio``: mean over prompts of
  sum P(valid YY > start) / sum P(all two-digit YY tokens the suite uses).
* ``unseen_token_mass``: mean total probability on tokens NOT in ``suite.vocabulary()``, over the
  prediction positions of all IOI, fact, greater-than and (repeated) induction prompts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from mechscope.inference.errors import InvalidInputError, ShapeMismatchError

from .task_suite import FactExample, GreaterThanExample, InductionExample, IOIExample, Split, TaskSuite

LogitsFn = Callable[[torch.Tensor], torch.Tensor]
GPT2_VOCAB_SIZE = 50257
PAD_TOKEN = 50256  # <|endoftext|>

# metric -> (comparison, target)
ACCEPTANCE_TARGETS: dict[str, tuple[str, float]] = {
    "ioi_io_beats_s_rate": (">=", 0.95),
    "ioi_logit_diff": (">=", 3.0),
    "induction_top1": (">=", 0.90),
    "fact_top1": (">=", 0.95),
    "greater_than_prob_ratio": (">=", 0.90),
    "unseen_token_mass": ("<", 0.01),
}


# --- reading logits ----------------------------------------------------------------------------
def read_positions(logits_fn: LogitsFn, sequences: Sequence[Sequence[int]], positions: Sequence[Sequence[int]],
                   *, batch_size: int = 16) -> Iterator[torch.Tensor]:
    """For each sequence in order, the float32 logits ``[len(positions[i]), vocab]`` at its positions.

    Sequences are right-padded with ``<|endoftext|>`` into batches of ``batch_size``.
    """
    if len(sequences) != len(positions):
        raise ShapeMismatchError(f"got {len(sequences)} sequences but {len(positions)} position lists",
                                 field="positions")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be an integer >= 1, got {batch_size!r}", field="batch_size")
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start:start + batch_size]
        width = max(len(s) for s in batch)
        tokens = torch.full((len(batch), width), PAD_TOKEN, dtype=torch.long)
        for row, seq in enumerate(batch):
            tokens[row, :len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        with torch.no_grad():
            logits = logits_fn(tokens)
        if logits.ndim != 3 or logits.shape[0] != len(batch) or logits.shape[1] != width \
                or logits.shape[2] < GPT2_VOCAB_SIZE:
            raise ShapeMismatchError(f"logits_fn returned shape {tuple(logits.shape)} for tokens of shape "
                                     f"{tuple(tokens.shape)}; expected [{len(batch)}, {width}, >={GPT2_VOCAB_SIZE}]",
                                     field="logits")
        for row in range(len(batch)):
            pos = positions[start + row]
            if any(not 0 <= p < len(batch[row]) for p in pos):
                raise ShapeMismatchError(f"positions {list(pos)} out of range for a sequence of length "
                                         f"{len(batch[row])}", field="positions")
            yield logits[row, list(pos)].detach().float().cpu()


def _strict_top1(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Bool per row: the target's logit is strictly greater than every other logit."""
    target_logit = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    others = logits.scatter(-1, targets.unsqueeze(-1), float("-inf"))
    return target_logit > others.max(dim=-1).values


def _unseen_mass(logits: torch.Tensor, unseen: torch.Tensor) -> torch.Tensor:
    """Probability on the columns where ``unseen`` is True, per row."""
    mask = torch.zeros(logits.shape[-1], dtype=torch.bool)
    mask[:unseen.shape[0]] = unseen
    mask[unseen.shape[0]:] = True
    return torch.exp(torch.logsumexp(logits[:, mask], dim=-1) - torch.logsumexp(logits, dim=-1))


def unseen_mask(vocabulary: Sequence[int]) -> torch.Tensor:
    """``[50257]`` bool, True for GPT-2 tokens outside ``vocabulary``."""
    mask = torch.ones(GPT2_VOCAB_SIZE, dtype=torch.bool)
    mask[torch.as_tensor(list(vocabulary), dtype=torch.long)] = False
    return mask


# --- per-task scores ---------------------------------------------------------------------------
@dataclass(frozen=True)
class IOIScores:
    accuracy: float
    io_beats_s_rate: float
    logit_diff: float
    unseen_token_mass: float
    n: int
    io_beats_s_rate_by_order: dict[str, float] = field(default_factory=dict)   # ABBA / BABA


@dataclass(frozen=True)
class InductionScores:
    top1: float
    top1_unrepeated: float
    unseen_token_mass: float
    n_positions: int


@dataclass(frozen=True)
class FactScores:
    top1: float
    top1_by_relation: dict[str, float]
    unseen_token_mass: float
    n: int


@dataclass(frozen=True)
class GreaterThanScores:
    prob_ratio: float
    unseen_token_mass: float
    n: int


def _mean(values: list[float] | torch.Tensor) -> float:
    values = torch.as_tensor(values, dtype=torch.float64)
    return float(values.mean()) if values.numel() else math.nan


def score_ioi(logits_fn: LogitsFn, examples: Sequence[IOIExample], vocabulary: Sequence[int], *,
              batch_size: int = 16) -> IOIScores:
    unseen = unseen_mask(vocabulary)
    correct, beats, diffs, masses = [], [], [], []
    last = [[len(e.tokens) - 1] for e in examples]
    for example, logits in zip(examples, read_positions(logits_fn, [e.tokens for e in examples], last,
                                                        batch_size=batch_size)):
        io, s = logits[0, example.io_token], logits[0, example.s_token]
        correct.append(float(_strict_top1(logits, torch.tensor([example.io_token]))[0]))
        beats.append(float(io > s))
        diffs.append(float(io - s))
        masses.append(float(_unseen_mass(logits, unseen)[0]))
    by_order = {order: _mean([b for b, e in zip(beats, examples) if e.order == order])
                for order in sorted({e.order for e in examples})}
    return IOIScores(_mean(correct), _mean(beats), _mean(diffs), _mean(masses), len(examples), by_order)


def score_induction(logits_fn: LogitsFn, examples: Sequence[InductionExample], vocabulary: Sequence[int], *,
                    batch_size: int = 16) -> InductionScores:
    unseen = unseen_mask(vocabulary)
    positions = [list(range(e.repeat_start, e.repeat_start + e.span_length - 1)) for e in examples]
    targets = [torch.tensor(e.tokens[e.repeat_start + 1:e.repeat_start + e.span_length]) for e in examples]
    hits, control_hits, masses = [], [], []
    for target, logits in zip(targets, read_positions(logits_fn, [e.tokens for e in examples], positions,
                                                      batch_size=batch_size)):
        hits.extend(_strict_top1(logits, target).tolist())
        masses.extend(_unseen_mass(logits, unseen).tolist())
    for target, logits in zip(targets, read_positions(logits_fn, [e.control_tokens for e in examples], positions,
                                                      batch_size=batch_size)):
        control_hits.extend(_strict_top1(logits, target).tolist())
    return InductionScores(_mean([float(h) for h in hits]), _mean([float(h) for h in control_hits]),
                           _mean(masses), len(hits))


def score_facts(logits_fn: LogitsFn, examples: Sequence[FactExample], vocabulary: Sequence[int], *,
                batch_size: int = 16) -> FactScores:
    unseen = unseen_mask(vocabulary)
    by_relation: dict[str, list[float]] = {}
    hits, masses = [], []
    last = [[len(e.tokens) - 1] for e in examples]
    for example, logits in zip(examples, read_positions(logits_fn, [e.tokens for e in examples], last,
                                                        batch_size=batch_size)):
        hit = float(_strict_top1(logits, torch.tensor([example.answer_token]))[0])
        hits.append(hit)
        by_relation.setdefault(example.relation, []).append(hit)
        masses.append(float(_unseen_mass(logits, unseen)[0]))
    return FactScores(_mean(hits), {r: _mean(v) for r, v in by_relation.items()}, _mean(masses), len(examples))


def score_greater_than(logits_fn: LogitsFn, examples: Sequence[GreaterThanExample], vocabulary: Sequence[int], *,
                       batch_size: int = 16) -> GreaterThanScores:
    unseen = unseen_mask(vocabulary)
    ratios, masses = [], []
    last = [[len(e.tokens) - 1] for e in examples]
    for example, logits in zip(examples, read_positions(logits_fn, [e.tokens for e in examples], last,
                                                        batch_size=batch_size)):
        years = torch.tensor(example.year_tokens)
        valid = years[torch.tensor(example.valid, dtype=torch.bool)]
        if valid.numel() == 0:
            ratios.append(0.0)
        else:
            log_ratio = torch.logsumexp(logits[0, valid], dim=0) - torch.logsumexp(logits[0, years], dim=0)
            ratios.append(float(torch.exp(log_ratio)))
        masses.append(float(_unseen_mass(logits, unseen)[0]))
    return GreaterThanScores(_mean(ratios), _mean(masses), len(examples))


# --- the report --------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrganismReport:
    """Every acceptance figure of one evaluation, with the targets of :data:`ACCEPTANCE_TARGETS`."""

    split: str
    ioi_accuracy: float
    ioi_io_beats_s_rate: float
    ioi_logit_diff: float
    induction_top1: float
    induction_top1_unrepeated: float
    fact_top1: float
    greater_than_prob_ratio: float
    unseen_token_mass: float
    fact_top1_by_relation: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    ioi_io_beats_s_rate_by_order: dict[str, float] = field(default_factory=dict)

    def checks(self) -> list[tuple[str, float, str, float, bool]]:
        """(metric, value, comparison, target, passed) for every metric with a target."""
        out = []
        for name, (op, target) in ACCEPTANCE_TARGETS.items():
            value = getattr(self, name)
            ok = value >= target if op == ">=" else value < target
            out.append((name, value, op, target, bool(ok)))  # NaN compares False: a missing figure fails
        return out

    @property
    def passed(self) -> bool:
        return all(ok for *_, ok in self.checks())

    def format_table(self) -> str:
        rows = [(name, f"{value:.4f}", f"{op} {target:g}", "PASS" if ok else "FAIL")
                for name, value, op, target, ok in self.checks()]
        for order, value in sorted(self.ioi_io_beats_s_rate_by_order.items()):
            rows.append((f"ioi_io_beats_s_rate[{order}]", f"{value:.4f}", "", "info"))
        rows.append(("ioi_accuracy (strict top-1)", f"{self.ioi_accuracy:.4f}", "", "info"))
        rows.append(("induction_top1_unrepeated", f"{self.induction_top1_unrepeated:.4f}", "~ chance", "info"))
        for relation, value in sorted(self.fact_top1_by_relation.items()):
            rows.append((f"fact_top1[{relation}]", f"{value:.4f}", "", "info"))
        header = ("metric", "value", "target", "result")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        lines = [f"Model organism acceptance ({self.split} split; "
                 + ", ".join(f"{k}={v}" for k, v in self.counts.items()) + ")"]
        for r in [header, *rows]:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
            if r is header:
                lines.append("  ".join("-" * w for w in widths))
        lines.append(f"overall: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)


def evaluate_organism(logits_fn: LogitsFn, suite: TaskSuite, *, split: Split = "heldout", n_ioi: int = 500,
                      n_induction: int = 200, n_greater_than: int = 500, n_facts: int | None = None,
                      batch_size: int = 16) -> OrganismReport:
    """Run the probes of ``suite`` and collect the report.

    Every fact in every frame of the split is asked unless ``n_facts`` is given; then a fixed
    (seeded) sample of that many fact prompts is used, e.g. for quick checks during training.
    """
    vocabulary = suite.vocabulary()
    fact_examples = suite.fact_examples(split)
    if n_facts is not None:
        if isinstance(n_facts, bool) or not isinstance(n_facts, int) or n_facts < 1:
            raise InvalidInputError(f"n_facts must be an integer >= 1 or None, got {n_facts!r}", field="n_facts")
        if n_facts < len(fact_examples):
            chosen = sorted(random.Random(f"organism_eval/{suite.seed}/facts").sample(range(len(fact_examples)),
                                                                                   n_facts))
            fact_examples = [fact_examples[i] for i in chosen]
    ioi = score_ioi(logits_fn, suite.ioi_examples(n_ioi, split), vocabulary, batch_size=batch_size)
    induction = score_induction(logits_fn, suite.induction_examples(n_induction, split), vocabulary,
                                batch_size=batch_size)
    facts = score_facts(logits_fn, fact_examples, vocabulary, batch_size=batch_size)
    greater = score_greater_than(logits_fn, suite.greater_than_examples(n_greater_than, split), vocabulary,
                                 batch_size=batch_size)
    pooled = [(ioi.unseen_token_mass, ioi.n), (induction.unseen_token_mass, induction.n_positions),
              (facts.unseen_token_mass, facts.n), (greater.unseen_token_mass, greater.n)]
    total = sum(n for _, n in pooled)
    unseen = sum(m * n for m, n in pooled if n) / total if total else math.nan
    return OrganismReport(
        split=split, ioi_accuracy=ioi.accuracy, ioi_io_beats_s_rate=ioi.io_beats_s_rate,
        ioi_logit_diff=ioi.logit_diff, induction_top1=induction.top1,
        induction_top1_unrepeated=induction.top1_unrepeated, fact_top1=facts.top1,
        greater_than_prob_ratio=greater.prob_ratio, unseen_token_mass=unseen,
        fact_top1_by_relation=facts.top1_by_relation, ioi_io_beats_s_rate_by_order=ioi.io_beats_s_rate_by_order,
        counts={"ioi": ioi.n, "induction_positions": induction.n_positions, "facts": facts.n,
                "greater_than": greater.n},
    )
