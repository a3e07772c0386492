"""Tests of the organism task suite: tokenization facts, determinism, vocabulary, split hygiene."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest
import torch

from mechscope.datasets import task_suite_data as data
from mechscope.datasets.task_suite import KINDS, TaskMix, TaskSuite
from mechscope.datasets.task_suite_tokens import CompiledTemplate, TemplateError
from mechscope.inference.errors import InvalidInputError

N_DOCS = 3000


@pytest.fixture(scope="module")
def suite() -> TaskSuite:
    return TaskSuite(seed=0)


@pytest.fixture(scope="module")
def tok(suite):
    return suite.tokenizer


@pytest.fixture(scope="module")
def docs(suite):
    return [suite.document(i) for i in range(N_DOCS)]


@pytest.fixture(scope="module")
def rows(suite):
    return suite.training_rows(N_DOCS)


@pytest.fixture(scope="module")
def train_text(rows, tok):
    return [tok.decode(r[1:].tolist()) for r in rows]


def template_regex(template: str) -> re.Pattern:
    """A template as a regex over text: literal words verbatim, each slot one or more words."""
    pattern = re.sub(r"\\\{[A-Za-z]+[0-9]*\\\}", r"[A-Za-z0-9' -]+?", re.escape(template))
    return re.compile(pattern)


def fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{([A-Za-z]+[0-9]*)\}", lambda m: values[m.group(1)], template)


# --- tokenization facts ----------------------------------------------------------------------------
def test_every_name_is_one_token_with_its_leading_space(suite, tok):
    for split in ("train", "heldout"):
        for name in suite.names(split):
            ids = tok.encode(" " + name)
            assert len(ids) == 1, name
            assert tok.token_str(ids[0]) == " " + name
            assert suite.name_token(name) == ids[0]
    assert not set(suite.names("train")) & set(suite.names("heldout"))
    assert len(suite.names("train")) >= 60 and len(suite.names("heldout")) >= 15


def test_years_split_into_century_token_and_two_digit_token(suite, tok):
    assert sorted(suite.year_suffixes) == list(range(10, 21))  # every century of 1000-2099
    for century, suffixes in suite.year_suffixes.items():
        if century == 19:
            continue
        assert len(suffixes) >= 50, century
        for yy in suffixes:
            ids = tok.encode(f" {century}{yy:02d}")
            assert tok.token_strs(ids) == [f" {century}", f"{yy:02d}"]
    # GPT-2 merges some years irregularly; those must be left out.
    assert tok.token_strs(tok.encode(" 1440")) == [" 1440"]
    assert tok.token_strs(tok.encode(" 1305")) == [" 130", "5"]
    assert 40 not in suite.year_suffixes[14] and 5 not in suite.year_suffixes[13]


def test_years_of_the_1900s_are_whole_tokens(suite, tok):
    assert suite.year_suffixes[19] == tuple(range(100))
    for yy in range(100):
        assert tok.token_strs(tok.encode(f" 19{yy:02d}")) == [f" 19{yy:02d}"]


def test_fact_answers_are_identified_by_their_first_token(suite, tok):
    for relation in data.RELATIONS:
        facts = suite.facts(relation)
        assert len(facts) >= 50, relation
        owner: dict[int, str] = {}
        for fact in facts:
            first = tok.encode(" " + fact.answer)[0]
            assert owner.setdefault(first, fact.answer) == fact.answer, (relation, fact)
            assert first not in tok.encode(" " + fact.subject), fact  # not copyable from the prompt
        assert len({f.subject for f in facts}) == len(facts)
    known = {("capital", "France"): "Paris", ("capital", "Texas"): "Austin", ("language", "Japan"): "Japanese",
             ("continent", "Brazil"): "South America"}
    table = {(f.relation, f.subject): f.answer for f in suite.facts()}
    for key, answer in known.items():
        assert table[key] == answer
    # Copyable and ambiguous facts are dropped: "Oklahoma City"; "Tallahassee" shares " Tall" with "Tallinn".
    assert ("capital", "Oklahoma") not in table and ("capital", "Florida") not in table


def test_template_slots_must_sit_on_token_boundaries(tok):
    with pytest.raises(TemplateError, match="Mary"):
        CompiledTemplate("Mary{X} went home.", tok, continued=False)
    with pytest.raises(TemplateError, match="double"):
        CompiledTemplate("The  {X} went home.", tok, continued=False)


# --- determinism and row format --------------------------------------------------------------------
def test_same_seed_gives_identical_rows_and_probes(suite, rows):
    again = TaskSuite(seed=0)
    assert torch.equal(again.training_rows(200), rows[:200])
    assert torch.equal(again.training_rows(10, first_row=37), rows[37:47])
    assert again.ioi_examples(50) == suite.ioi_examples(50)
    assert again.induction_examples(20) == suite.induction_examples(20)
    assert again.greater_than_examples(50) == suite.greater_than_examples(50)
    assert again.fact_examples() == suite.fact_examples()


def test_different_seed_gives_different_rows(rows):
    other = TaskSuite(seed=1).training_rows(200)
    assert (other != rows[:200]).any(dim=1).float().mean() > 0.99
    assert TaskSuite(seed=1).ioi_examples(50) != TaskSuite(seed=0).ioi_examples(50)


def test_training_batches_stream_consecutive_rows(suite, rows):
    stream = suite.training_batches(8, first_row=16)
    assert torch.equal(next(stream), rows[16:24])
    assert torch.equal(next(stream), rows[24:32])


def test_rows_are_bos_then_whole_sentences_cut_at_n_ctx(suite, rows, docs):
    assert rows.dtype == torch.long and rows.shape == (N_DOCS, 128)
    assert (rows[:, 0] == 50256).all()
    assert not (rows[:, 1:] == 50256).any()
    for row, doc in zip(rows[:200], docs[:200]):
        full = [50256] + [t for s in doc for t in s.tokens]
        assert len(full) >= 128 and len(full) - len(doc[-1].tokens) < 128  # last sentence crosses n_ctx
        assert row.tolist() == full[:128]
    short = TaskSuite(seed=0, n_ctx=48).training_rows(5)
    assert short.shape == (5, 48)


def test_sentences_are_canonical_gpt2_tokenizations(docs, tok):
    """Assembling pre-tokenised pieces must give exactly what the tokenizer gives on the text."""
    for doc in docs[:400]:
        ids = [t for s in doc for t in s.tokens]
        assert tok.encode(tok.decode(ids)) == ids


def test_generation_is_fast_enough(suite):
    start = time.perf_counter()
    suite.training_rows(2000, first_row=10_000)
    assert time.perf_counter() - start < 2.4  # >= 50k rows per minute on one core


# --- task mix --------------------------------------------------------------------------------------
def test_documents_mix_kinds_with_the_configured_weights(docs):
    counts = Counter(s.kind for doc in docs for s in doc if s.kind != "induction_repeat")
    total = sum(counts.values())
    mix = TaskMix()
    for kind, weight in zip(KINDS, mix.weights()):
        assert abs(counts[kind] / total - weight / sum(mix.weights())) < 0.02, kind
    n_repeats = sum(s.kind == "induction_repeat" for doc in docs for s in doc)
    assert n_repeats > 0.6 * counts["induction"]
    assert sum(len({s.kind for s in doc}) >= 3 for doc in docs) > 0.95 * len(docs)


def test_induction_spans_are_repeated_verbatim_in_the_same_document(docs, suite):
    low, high = suite.span_lengths
    for doc in docs[:500]:
        spans = [tuple(s.tokens) for s in doc if s.kind == "induction"]
        for s in doc:
            if s.kind == "induction":
                assert low <= len(s.tokens) <= high and set(s.tokens) <= set(suite.induction_pool)
            if s.kind == "induction_repeat":
                assert tuple(s.tokens) in spans


def test_single_kind_mix_and_its_smaller_vocabulary():
    only_ioi = TaskSuite(seed=3, mix=TaskMix(ioi=1, fact=0, greater_than=0, induction=0, filler=0))
    assert {s.kind for i in range(50) for s in only_ioi.document(i)} == {"ioi"}
    vocab = set(only_ioi.vocabulary())
    full = set(TaskSuite(seed=3).vocabulary())
    assert vocab < full and 100 < len(vocab) < len(full) / 3   # names, places, objects, template words
    assert set(only_ioi.training_rows(300).flatten().tolist()) <= vocab


@pytest.mark.parametrize("kwargs, field", [
    ({"mix": "not a mix"}, "mix"), ({"n_ctx": 4}, "n_ctx"), ({"seed": "zero"}, "seed"),
    ({"span_lengths": (5, 3)}, "span_lengths"), ({"induction_pool_size": 10}, "induction_pool_size"),
])
def test_bad_constructor_arguments_raise_typed_errors(kwargs, field):
    with pytest.raises(InvalidInputError) as info:
        TaskSuite(**kwargs)
    assert info.value.field == field


def test_bad_mix_and_arguments_raise_typed_errors(suite):
    with pytest.raises(InvalidInputError, match="ioi"):
        TaskMix(ioi=-1)
    with pytest.raises(InvalidInputError, match="positive"):
        TaskMix(ioi=0, fact=0, greater_than=0, induction=0, filler=0)
    with pytest.raises(InvalidInputError, match="'test'"):
        suite.ioi_examples(3, split="test")
    with pytest.raises(InvalidInputError, match="n_rows"):
        suite.training_rows(-1)
    with pytest.raises(InvalidInputError, match="relation"):
        suite.facts("population")



# --- vocabulary ------------------------------------------------------------------------------------
def text_vocabulary(suite: TaskSuite) -> set[int]:
    """The training vocabulary computed independently: run the tokenizer on whole sentence texts.

    For every template and slot, the slot runs over all its possible words while the others keep
    one value; both document-initial and later (space-prefixed) sentences are encoded.
    """
    tok = suite.tokenizer
    names = data.TRAIN_NAMES + data.HELDOUT_NAMES
    years = [f"{c}{yy:02d}" for c in data.CENTURIES for yy in suite.year_suffixes[c]]
    filler_pools = {
        "name": names, "person": data.PERSONS, "adj": data.ADJECTIVES, "animal": data.ANIMALS, "time": data.TIMES,
        "place": data.TRAIN_PLACES + data.HELDOUT_PLACES, "object": data.TRAIN_OBJECTS + data.HELDOUT_OBJECTS,
        "event": data.TRAIN_EVENTS + data.HELDOUT_EVENTS, "year": years,
        "region": [c[0] for c in data.COUNTRIES] + [s[0] for s in data.US_STATES],
        "city": sorted({f.answer for f in suite.facts("capital")}),
    }
    jobs = [(t, {s: filler_pools[s.rstrip("0123456789")] for s in re.findall(r"\{(\w+)\}", t)})
            for t in data.FILLER_TEMPLATES]
    train_names = suite.names("train")
    jobs += [(t, {"N1": train_names, "N2": train_names, "S": train_names, "IO": train_names,
                  "place": suite.places("train"), "object": suite.objects("train")})
             for t in suite.ioi_templates("train")]
    for relation, frames in suite.fact_frames("train").items():
        facts = suite.facts(relation)
        jobs += [(t, {"X": [f.subject for f in facts], "Y": [f.answer for f in facts], "name": names})
                 for t in frames]
    yy = suite.year_suffixes
    jobs += [(t, {"E": suite.events("train"), "Y1": [f"{c}{y:02d}" for c in data.CENTURIES for y in yy[c][:-1]],
                  "Y2": [f"{c}{y:02d}" for c in data.CENTURIES for y in yy[c][1:]]})
             for t in suite.greater_than_templates("train")]
    out = {tok.eot_token_id, *suite.induction_pool}
    for template, choices in jobs:
        base = {slot: words[0] for slot, words in choices.items()}
        for slot, words in choices.items():
            for word in words:
                text = fill(template, {**base, slot: word})
                out.update(tok.encode(text))
                out.update(tok.encode(" " + text))
    return out


def test_vocabulary_equals_an_independent_text_tokenization(suite):
    vocab = suite.vocabulary()
    assert vocab == sorted(set(vocab))
    assert set(vocab) == text_vocabulary(suite)
    assert 1500 < len(vocab) < 5000


def test_generated_rows_stay_inside_the_vocabulary_and_cover_it(suite):
    # 120,000 rows (~8 s) reach the rarest tokens, sentence-initial pieces of names ("Kath" + "leen");
    # the organism's training reads 160,000 (its warm start) after 448,000 (round 1).
    seen = set(suite.training_rows(120_000).flatten().tolist())
    assert seen == set(suite.vocabulary())


def test_heldout_prompts_and_answers_are_inside_the_training_vocabulary(suite):
    vocab = set(suite.vocabulary())
    for e in suite.ioi_examples(400):
        assert set(e.tokens) | {e.io_token, e.s_token} <= vocab
    for e in suite.induction_examples(100):
        assert set(e.tokens) | set(e.control_tokens) <= vocab
    for e in suite.fact_examples():
        assert set(e.tokens) | {e.answer_token} <= vocab
    for e in suite.greater_than_examples(400):
        assert set(e.tokens) | set(e.year_tokens) <= vocab


def test_probe_prompts_are_what_the_tokenizer_gives_for_their_text(suite, tok):
    """A user who types a probe's text into the debugger gets exactly the probe's tokens."""
    prompts = [e.tokens for e in suite.ioi_examples(100)] + [e.tokens for e in suite.fact_examples()]
    prompts += [e.tokens for e in suite.greater_than_examples(100)]
    prompts += [t for e in suite.induction_examples(50) for t in (e.tokens, e.control_tokens)]
    for tokens in prompts:
        assert tok.encode(tok.decode(tokens[1:]), prepend_bos=True) == list(tokens)


def test_demo_prompt_is_inside_the_vocabulary(suite, tok):
    ids = tok.encode("When Mary and John went to the store, John gave a drink to", prepend_bos=True)
    assert set(ids) | {tok.encode(" Mary")[0]} <= set(suite.vocabulary())


# --- split hygiene ---------------------------------------------------------------------------------
def test_heldout_word_lists_are_disjoint_from_training_lists(suite):
    for getter in (suite.names, suite.places, suite.objects, suite.events, suite.ioi_templates,
                   suite.greater_than_templates):
        assert not set(getter("train")) & set(getter("heldout"))
    train_frames, heldout_frames = suite.fact_frames("train"), suite.fact_frames("heldout")
    assert set(train_frames) == set(heldout_frames) == set(data.RELATIONS)
    for relation in data.RELATIONS:
        assert not set(train_frames[relation]) & set(heldout_frames[relation])


def test_heldout_templates_and_frames_never_occur_in_training_text(suite, train_text):
    text = "\n".join(train_text)
    heldout = list(suite.ioi_templates("heldout")) + list(suite.greater_than_templates("heldout"))
    heldout += [f for frames in suite.fact_frames("heldout").values() for f in frames]
    for template in heldout:
        prefix = template.split("{Y}")[0].split("{IO}")[0].split("{Y2}")[0]  # what an eval prompt shows
        assert not template_regex(prefix.rstrip()).search(text), template
    # The same check does find the training templates, so it is not vacuous.
    train = list(suite.ioi_templates("train")) + list(suite.greater_than_templates("train"))
    train += [f for frames in suite.fact_frames("train").values() for f in frames]
    found = sum(bool(template_regex(t.split("{Y}")[0].split("{IO}")[0].split("{Y2}")[0].rstrip()).search(text))
                for t in train)
    assert found == len(train)


def test_training_task_sentences_use_only_training_words_and_templates(suite, docs):
    train_ioi, train_gt = set(suite.ioi_templates("train")), set(suite.greater_than_templates("train"))
    train_frames = {f for frames in suite.fact_frames("train").values() for f in frames}
    names, places, objects = set(suite.names("train")), set(suite.places("train")), set(suite.objects("train"))
    kinds = Counter()
    for doc in docs:
        for s in doc:
            kinds[s.kind] += 1
            if s.kind == "ioi":
                assert s.template in train_ioi
                assert {s.values[k] for k in ("N1", "N2", "S", "IO")} <= names
                assert s.values["place"] in places and s.values["object"] in objects
            elif s.kind == "fact":
                assert s.template in train_frames
            elif s.kind == "greater_than":
                assert s.template in train_gt and s.values["E"] in set(suite.events("train"))
                assert s.values["Y2"] > s.values["Y1"] and s.values["Y2"][:2] == s.values["Y1"][:2]
    assert min(kinds[k] for k in KINDS) > 500


def test_heldout_words_still_occur_in_training_rows_in_other_contexts(suite, rows, tok):
    counts = Counter(rows.flatten().tolist())
    for name in suite.names("heldout"):
        assert counts[suite.name_token(name)] >= 20, name
    for word in suite.places("heldout") + suite.objects("heldout") + suite.events("heldout"):
        assert counts[tok.encode(" " + word)[0]] >= 10, word


# --- evaluation probes -----------------------------------------------------------------------------
def test_ioi_examples_are_labelled_correctly(suite, tok):
    examples = suite.ioi_examples(200)
    assert Counter(e.order for e in examples) == {"ABBA": 100, "BABA": 100}
    assert {e.template_id for e in examples} == set(range(len(suite.ioi_templates("heldout"))))
    name_ids = {suite.name_token(n) for n in suite.names("heldout")}
    for e in examples:
        assert e.tokens[0] == 50256
        in_prompt = [t for t in e.tokens if t in name_ids]
        assert in_prompt.count(e.io_token) == 1 and in_prompt.count(e.s_token) == 2 and len(in_prompt) == 3
        assert in_prompt[0] == (e.io_token if e.order == "ABBA" else e.s_token)
        text = tok.decode(e.tokens[1:])
        assert e.template == suite.ioi_templates("heldout")[e.template_id]
        assert template_regex(e.template.split(" {IO}")[0]).fullmatch(text)


def test_induction_examples_repeat_a_fresh_span(suite):
    for e in suite.induction_examples(100):
        span = e.tokens[e.first_start:e.first_start + e.span_length]
        assert e.tokens[e.repeat_start:e.repeat_start + e.span_length] == span
        assert len(e.tokens) == e.repeat_start + e.span_length
        assert len(set(span)) == e.span_length and set(span) <= set(suite.induction_pool)
        rest = e.tokens[:e.first_start] + e.tokens[e.first_start + e.span_length:e.repeat_start]
        assert not set(span) & set(rest)
        decoy = e.control_tokens[e.first_start:e.first_start + e.span_length]
        assert not set(decoy) & (set(span) | set(rest))
        assert e.control_tokens[:e.first_start] == e.tokens[:e.first_start]
        assert e.control_tokens[e.first_start + e.span_length:] == e.tokens[e.first_start + e.span_length:]
        assert suite.span_lengths[0] <= e.span_length <= suite.span_lengths[1]
    assert {e.span_length for e in suite.induction_examples(5, span_length=7)} == {7}


def test_fact_examples_cover_every_fact_in_every_heldout_frame(suite, tok):
    examples = suite.fact_examples()
    n_frames = {r: len(f) for r, f in suite.fact_frames("heldout").items()}
    assert len(examples) == sum(len(suite.facts(r)) * n_frames[r] for r in data.RELATIONS)
    for e in examples:
        text = tok.decode(e.tokens[1:])
        assert text == e.frame.split(" {Y}")[0].replace("{X}", e.subject)
        assert e.answer_token == tok.encode(" " + e.answer)[0]
        assert (" " + e.answer).startswith(tok.decode([e.answer_token]))
    paris = [e for e in examples if e.subject == "France" and e.relation == "capital"]
    assert len(paris) == n_frames["capital"] and {e.answer_token for e in paris} == {tok.encode(" Paris")[0]}


def test_greater_than_examples_and_their_valid_years(suite, tok):
    examples = suite.greater_than_examples(300)
    for e in examples:
        text = tok.decode(e.tokens[1:])
        whole = e.century == 19   # the prompt stops at "the year"; the answer is the whole " 19YY" token
        pattern = r"The (\w+) \w+ (?:\w+ )*?(?:in|from) the year (\d\d)(\d\d) .*the year" + ("" if whole else r" (\d\d)")
        match = re.fullmatch(pattern, text)
        assert match, text
        assert match.group(1) in suite.events("heldout")
        assert int(match.group(2)) == e.century and (whole or int(match.group(4)) == e.century)
        assert int(match.group(3)) == e.start_year
        assert e.year_values == suite.year_suffixes[e.century]
        answers = [f" {e.century}{y:02d}" if whole else f"{y:02d}" for y in e.year_values]
        assert [tok.decode([t]) for t in e.year_tokens] == answers
        assert list(e.valid) == [y > e.start_year for y in e.year_values] and any(e.valid)
    assert {e.century for e in examples} == set(range(10, 21))
    assert len({e.start_year for e in examples}) > 40
