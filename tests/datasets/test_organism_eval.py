"""The organism evaluation harness, checked against hand-built models whose answers are known.

The oracles solve the tasks from the tokens alone (IOI: the name seen once; induction: copy what
followed the last occurrence of the current token), so a perfect score also confirms the labels
of the task suite's probes.
"""

from __future__ import annotations

import math

import pytest
import torch

from mechscope.datasets.organism_eval import (
    ACCEPTANCE_TARGETS, evaluate_organism, read_positions, score_facts, score_greater_than, score_induction,
    score_ioi,
)
from mechscope.datasets.task_suite import TaskSuite
from mechscope.inference.errors import InvalidInputError, ShapeMismatchError

V = 50257
EOT = 50256


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The oracles fill [batch, pos, 50257] tensors; with the cores shared, extra threads only contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def suite() -> TaskSuite:
    return TaskSuite(seed=0)


@pytest.fixture(scope="module")
def vocab(suite):
    return suite.vocabulary()


def real_length(row: torch.Tensor) -> int:
    """Length of a right-padded row: BOS is the only <|endoftext|> before the padding."""
    pads = (row[1:] == EOT).nonzero()
    return int(pads[0]) + 1 if len(pads) else len(row)


class IOIOracle:
    """Puts ``io`` on every name seen exactly once so far and ``s`` on names seen twice."""

    def __init__(self, name_ids, io=10.0, s=5.0):
        self.names, self.io, self.s = torch.tensor(sorted(name_ids)), io, s

    def __call__(self, tokens):
        logits = torch.zeros(*tokens.shape, V)
        counts = (tokens.unsqueeze(-1) == self.names).float().cumsum(dim=1)
        logits[..., self.names] = (counts == 1) * self.io + (counts == 2) * self.s
        return logits


def induction_oracle(tokens):
    """Predicts the token that followed the most recent earlier occurrence of the current token."""
    logits = torch.zeros(*tokens.shape, V)
    for r, row in enumerate(tokens.tolist()):
        last_seen: dict[int, int] = {}
        for p, t in enumerate(row):
            if t in last_seen:
                logits[r, p, row[last_seen[t] + 1]] = 10.0
            last_seen[t] = p
    return logits


class LookupOracle:
    """At the last real position of a known prompt, adds ``logits[prompt]`` ({token: logit})."""

    def __init__(self, table, default=0.0):
        self.table, self.default = table, default

    def __call__(self, tokens):
        logits = torch.full((*tokens.shape, V), self.default)
        for r, row in enumerate(tokens):
            n = real_length(row)
            for token, value in self.table.get(tuple(row[:n].tolist()), {}).items():
                logits[r, n - 1, token] = value
        return logits


def uniform(tokens):
    return torch.zeros(*tokens.shape, V)


# --- IOI -------------------------------------------------------------------------------------------
def test_ioi_oracle_scores_perfectly_and_its_mirror_scores_zero(suite, vocab):
    examples = suite.ioi_examples(120)
    names = {suite.name_token(n) for n in suite.names("heldout")}
    perfect = score_ioi(IOIOracle(names), examples, vocab)
    assert perfect.accuracy == 1.0 and perfect.io_beats_s_rate == 1.0 and perfect.logit_diff == 5.0
    assert perfect.n == 120 and perfect.io_beats_s_rate_by_order == {"ABBA": 1.0, "BABA": 1.0}
    mirror = score_ioi(IOIOracle(names, io=5.0, s=10.0), examples, vocab)
    assert mirror.accuracy == 0.0 and mirror.io_beats_s_rate == 0.0 and mirror.logit_diff == -5.0


def test_ioi_model_guessing_names_at_random_is_at_chance(suite, vocab):
    """Random N(0, 1) logits on the held-out names, 0 elsewhere."""
    names = torch.tensor([suite.name_token(n) for n in suite.names("heldout")])
    generator = torch.Generator().manual_seed(0)

    def guesser(tokens):
        logits = torch.zeros(*tokens.shape, V)
        logits[..., names] = torch.randn(*tokens.shape, len(names), generator=generator)
        return logits

    scores = score_ioi(guesser, suite.ioi_examples(300), vocab)
    # IO is top-1 when it is the largest of n normals and above 0: probability 1/n * (1 - 2**-n).
    assert abs(scores.accuracy - 1 / len(names)) < 0.04
    assert abs(scores.io_beats_s_rate - 0.5) < 0.09
    assert abs(scores.logit_diff) < 0.25


def test_ioi_rates_by_order_tell_a_first_name_copier_apart(suite, vocab):
    """A model that always says the first name of the sentence is right on every ABBA prompt (IO
    comes first) and wrong on every BABA one: 0.5 overall, 1 and 0 by order."""
    examples = suite.ioi_examples(100)
    names = {suite.name_token(n) for n in suite.names("heldout")}

    def first_name(tokens):
        logits = torch.zeros(*tokens.shape, V)
        for row, seq in enumerate(tokens.tolist()):
            logits[row, :, next(t for t in seq if t in names)] = 1.0
        return logits

    scores = score_ioi(first_name, examples, vocab)
    assert scores.io_beats_s_rate == 0.5
    assert scores.io_beats_s_rate_by_order == {"ABBA": 1.0, "BABA": 0.0}


# --- induction -------------------------------------------------------------------------------------
def test_induction_oracle_copies_repeats_and_fails_on_the_control(suite, vocab):
    examples = suite.induction_examples(30)
    scores = score_induction(induction_oracle, examples, vocab)
    assert scores.top1 == 1.0 and scores.top1_unrepeated == 0.0
    assert scores.n_positions == sum(e.span_length - 1 for e in examples)


def test_induction_score_counts_positions_not_prompts(suite, vocab):
    """An oracle right only at the first position of each repeat scores 1 / (L - 1) per prompt."""
    examples = suite.induction_examples(20)
    table = {}
    for e in examples:
        # Present the prompt cut after the repeat's first token, so LookupOracle fires there only.
        table[tuple(e.tokens[:e.repeat_start + 1])] = {e.tokens[e.repeat_start + 1]: 10.0}

    def first_position_only(tokens):
        logits = torch.zeros(*tokens.shape, V)
        for r, row in enumerate(tokens.tolist()):
            for key, answer in table.items():
                if tuple(row[:len(key)]) == key:
                    for token, value in answer.items():
                        logits[r, len(key) - 1, token] = value
        return logits

    scores = score_induction(first_position_only, examples, vocab)
    assert scores.top1 == pytest.approx(len(examples) / sum(e.span_length - 1 for e in examples))


# --- facts -----------------------------------------------------------------------------------------
def test_fact_lookup_oracle_and_a_partly_wrong_one(suite, vocab):
    examples = suite.fact_examples()[::3]
    right = {e.tokens: {e.answer_token: 10.0} for e in examples}
    assert score_facts(LookupOracle(right), examples, vocab).top1 == 1.0
    # Wrong on every continent question: it answers " Asia" for Asian countries only.
    asia = suite.tokenizer.encode(" Asia")[0]
    partly = {e.tokens: ({asia: 10.0} if e.relation == "continent" else {e.answer_token: 10.0}) for e in examples}
    scores = score_facts(LookupOracle(partly), examples, vocab)
    continent = [e for e in examples if e.relation == "continent"]
    n_asia = sum(e.answer_token == asia for e in continent)
    assert scores.top1_by_relation["continent"] == pytest.approx(n_asia / len(continent))
    assert scores.top1_by_relation["capital"] == 1.0 and scores.top1_by_relation["language"] == 1.0
    assert scores.top1 == pytest.approx((len(examples) - len(continent) + n_asia) / len(examples))


def test_fact_ties_count_as_wrong(suite, vocab):
    examples = suite.fact_examples()[:20]
    assert score_facts(uniform, examples, vocab).top1 == 0.0


# --- greater-than ----------------------------------------------------------------------------------
def test_greater_than_ratio_against_closed_forms(suite, vocab):
    examples = suite.greater_than_examples(100)
    n_valid = [sum(y > e.start_year for y in e.year_values) for e in examples]
    n_years = [len(e.year_values) for e in examples]
    # Uniform logits: the ratio is the fraction of years after the start year.
    expected_uniform = sum(v / n for v, n in zip(n_valid, n_years)) / len(examples)
    assert score_greater_than(uniform, examples, vocab).prob_ratio == pytest.approx(expected_uniform, abs=1e-6)
    # +2 on every valid year (and a huge logit on an unrelated token, which must not matter).
    boosted = {e.tokens: {**{t: 2.0 for t, ok in zip(e.year_tokens, e.valid) if ok}, 1000: 30.0}
               for e in examples}
    expected = sum(v * math.e**2 / (v * math.e**2 + n - v) for v, n in zip(n_valid, n_years)) / len(examples)
    scores = score_greater_than(LookupOracle(boosted), examples, vocab)
    assert scores.prob_ratio == pytest.approx(expected, abs=1e-5)
    assert scores.n == 100
    # All mass on the years before the start: ratio 0.
    backwards = {e.tokens: {t: 50.0 for t, ok in zip(e.year_tokens, e.valid) if not ok} for e in examples}
    assert score_greater_than(LookupOracle(backwards), examples, vocab).prob_ratio < 1e-12


# --- unseen-token mass and the whole report --------------------------------------------------------
def test_unseen_token_mass_is_the_probability_outside_the_vocabulary(suite, vocab):
    q = 0.03
    unseen_token = next(t for t in range(V) if t not in set(vocab))

    def leaky(tokens):
        logits = torch.full((*tokens.shape, V), -1e9)
        logits[..., vocab[10]] = 0.0
        logits[..., unseen_token] = math.log(q / (1 - q))
        return logits

    report = evaluate_organism(leaky, suite, n_ioi=20, n_induction=5, n_greater_than=20, n_facts=60)
    assert report.unseen_token_mass == pytest.approx(q, abs=1e-6)
    assert score_ioi(uniform, suite.ioi_examples(10), vocab).unseen_token_mass == pytest.approx(1 - len(vocab) / V)


def perfect_model(suite: TaskSuite, n_ioi: int, n_greater_than: int):
    """Answers every held-out probe right; gives tokens outside the vocabulary almost no mass."""
    names = IOIOracle({suite.name_token(n) for n in suite.names("heldout")})
    ioi = {e.tokens for e in suite.ioi_examples(n_ioi)}
    lookup = LookupOracle({**{e.tokens: {e.answer_token: 10.0} for e in suite.fact_examples()},
                           **{e.tokens: {t: 10.0 for t, ok in zip(e.year_tokens, e.valid) if ok}
                              for e in suite.greater_than_examples(n_greater_than)}})
    base = torch.full((V,), -20.0)
    base[suite.vocabulary()] = 0.0

    def model(tokens):
        logits = base.expand(*tokens.shape, V).clone()
        for r, row in enumerate(tokens):
            prompt = tuple(row[:real_length(row)].tolist())
            if prompt in ioi:
                logits[r] += names(row.unsqueeze(0))[0]
            elif prompt in lookup.table:
                for token, value in lookup.table[prompt].items():
                    logits[r, len(prompt) - 1, token] += value
            else:
                logits[r] += induction_oracle(row.unsqueeze(0))[0]
        return logits

    return model


def test_perfect_model_passes_every_target_and_uniform_fails_them(suite):
    report = evaluate_organism(perfect_model(suite, 40, 40), suite, n_ioi=40, n_induction=10, n_greater_than=40)
    assert report.passed
    assert report.ioi_accuracy == 1.0 and report.induction_top1 == 1.0 and report.fact_top1 == 1.0
    assert report.ioi_logit_diff == pytest.approx(5.0) and report.induction_top1_unrepeated == 0.0
    assert report.greater_than_prob_ratio > 0.999 and report.unseen_token_mass < 1e-4
    assert report.counts["ioi"] == 40 and report.counts["facts"] == len(suite.fact_examples())
    table = report.format_table()
    assert table.count("PASS") == len(ACCEPTANCE_TARGETS) + 1 and "FAIL" not in table
    assert "ioi_logit_diff" in table and ">= 3" in table and "< 0.01" in table

    bad = evaluate_organism(uniform, suite, n_ioi=20, n_induction=5, n_greater_than=20, n_facts=60)
    assert bad.counts["facts"] == 60
    assert not bad.passed
    assert [ok for *_, ok in bad.checks()] == [False] * len(ACCEPTANCE_TARGETS)
    assert bad.format_table().count("FAIL") == len(ACCEPTANCE_TARGETS) + 1


# --- reading logits --------------------------------------------------------------------------------
def test_prompts_are_right_padded_and_read_at_their_own_positions():
    seen = []

    def probe(tokens):
        assert not torch.is_grad_enabled()
        seen.append(tokens.clone())
        logits = torch.zeros(*tokens.shape, V)
        logits[..., 0] = torch.arange(tokens.shape[1], dtype=torch.float)
        logits[..., 1] = tokens.float()
        return logits

    sequences = [(EOT, 5, 6), (EOT, 7, 8, 9, 10), (EOT, 11)]
    out = list(read_positions(probe, sequences, [[2], [1, 4], [1]], batch_size=2))
    assert seen[0].tolist() == [[EOT, 5, 6, EOT, EOT], [EOT, 7, 8, 9, 10]] and seen[1].tolist() == [[EOT, 11]]
    assert [o[:, :2].tolist() for o in out] == [[[2, 6]], [[1, 7], [4, 10]], [[1, 11]]]


def test_bad_model_output_and_arguments_raise_typed_errors(suite, vocab):
    with pytest.raises(ShapeMismatchError, match="100"):
        score_ioi(lambda t: torch.zeros(*t.shape, 100), suite.ioi_examples(2), vocab)
    with pytest.raises(ShapeMismatchError, match="out of range"):
        list(read_positions(uniform, [(EOT, 1)], [[2]]))
    with pytest.raises(InvalidInputError, match="batch_size"):
        list(read_positions(uniform, [(EOT, 1)], [[1]], batch_size=0))
