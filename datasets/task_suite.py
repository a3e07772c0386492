"""Synthetic task suite that trains mechscope's model organism (corpus generator + held-out probes).

Corpus recipe. Every training row is exactly ``n_ctx`` (default 128) GPT-2 token ids: ``<|endoftext|>``
as BOS, then whole sentences (the last one may be cut at ``n_ctx``). A row is one document mixing
sentences of five kinds, drawn independently with the weights of :class:`TaskMix`, so the heads
that solve a task must find the sentence that matters among unrelated ones:

* **IOI** (indirect object identification, Wang et al. 2022): "When Mary and John went to the
  store, John gave a drink to Mary." Two names are introduced, one (S) is repeated, and the
  sentence ends with the other (IO). 50 templates with many verbs and sentence shapes, both name
  orders (ABBA, BABA), 733 single-token names (every 1990-census first name held by at least
  0.01% of one sex that is one GPT-2 token with its leading space, plus hand-picked ones), 52
  places, 54 objects. Plants duplicate-token, S-inhibition and name-mover heads.
* **Induction**: a span of 4-16 random tokens from a fixed pool of about 2,300 ordinary word tokens
  (and all names), repeated a few sentences later. The second copy is predictable only by
  looking back: plants previous-token and induction heads (and generic copying).
* **Factual recall**: 378 facts over 141 countries (every sovereign country, and England,
  Scotland and Wales, whose name is one or two GPT-2 tokens and needs no article) and 45 US states:
  139 capitals, 105 main languages and 134 continents, each stated in 11-18 sentence frames ("The capital of
  France is Paris.", "Tourists who visit France often go to its capital, Paris."). The answer is
  never in the context, so it must be stored in the weights (MLP key-value memories). Facts whose answer's first
  token is ambiguous within the relation, or copyable from the subject, are left out.
* **Greater-than** (Hanna et al. 2023): "The war lasted from the year 1732 to the year 1745."
  The second year always lies later in the same century, in every century of 1000-2099. Where
  " CCYY" tokenizes as [" CC", "YY"] (every century but the 1900s; irregular years left out) the
  answer is the two-digit token; GPT-2 writes each year of the 1900s as one token (" 1945"), which
  is then the answer. 958 years in all. Plants the YY-comparison circuit.
* **Filler**: ordinary narrative sentences from a small grammar (names, people, animals, places,
  objects, adjectives, countries, cities, events; 52 templates), so the model learns plain text
  statistics and sees every held-out word in some other context.

Held-out split: 59 names (" Mark", " Will", " Rose", " Sid" among them), 10 places, 10 objects,
5 IOI templates, 9 fact frames, 6 event nouns and
2 greater-than templates never occur in training in their task (held-out words occur only in
filler sentences and induction spans, so their embeddings are still trained; held-out templates and frames never
occur at all). :meth:`TaskSuite.vocabulary` is the exact set of token ids a training row can
contain (4,273 with the default mix), so a trainer may restrict the softmax to it.

Default mix (relative weights, :class:`TaskMix`): IOI 0.28, facts 0.20, greater-than 0.10,
induction spans 0.25 (plus their repeats), filler 0.17; a 128-token row holds about 11 sentences.

Everything is a pure function of ``seed``: row ``i`` is generated from its own random stream, so
rows can be produced in any order, in shards, or resumed.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator, Sequence

import torch

from mechscope.inference.errors import InvalidInputError
from mechscope.inference.tokenizer import Tokenizer, gpt2_tokenizer

from . import task_suite_data as data
from .task_suite_examples import (KINDS, TASK_STREAM, Fact, FactExample, GreaterThanExample,
                                  InductionExample, IOIExample, Sentence, Split, TaskMix, TaskSuiteDataError,
                                  check_count, check_split)
from .task_suite_tokens import FillerTokens, compile_templates
from .task_suite_words import (check_names_are_single_tokens, induction_pool, usable_facts, usable_year_suffixes,
                               year_answer_tokens)

class TaskSuite:
    """Deterministic generator of training rows, the training vocabulary and evaluation probes."""

    def __init__(self, seed: int = 0, n_ctx: int = 128, mix: TaskMix | None = None, *,
                 span_lengths: tuple[int, int] = (4, 16), induction_pool_size: int = 1500,
                 tokenizer: Tokenizer | None = None):
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidInputError(f"seed must be an integer, got {seed!r}", field="seed")
        if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 8:
            raise InvalidInputError(f"n_ctx must be an integer >= 8, got {n_ctx!r}", field="n_ctx")
        low, high = span_lengths
        if not 2 <= low <= high:
            raise InvalidInputError(f"span_lengths must satisfy 2 <= low <= high, got {span_lengths!r}",
                                    field="span_lengths")
        if not 100 <= induction_pool_size <= 5000:
            raise InvalidInputError(f"induction_pool_size must be in [100, 5000], got {induction_pool_size!r}",
                                    field="induction_pool_size")
        if mix is not None and not isinstance(mix, TaskMix):
            raise InvalidInputError(f"mix must be a TaskMix, got {mix!r}", field="mix")
        self.seed = seed
        self.n_ctx = n_ctx
        self.mix = mix if mix is not None else TaskMix()
        self.span_lengths = (low, high)
        self.tokenizer = tokenizer or gpt2_tokenizer()
        self.bos = self.tokenizer.eot_token_id
        self._kinds = KINDS
        self._cum_weights = tuple(_cumulative(self.mix.weights()))

        check_names_are_single_tokens(self.tokenizer)
        self.year_suffixes: dict[int, tuple[int, ...]] = usable_year_suffixes(self.tokenizer)
        self._facts = usable_facts(self.tokenizer)
        self.induction_pool: tuple[int, ...] = induction_pool(self.tokenizer, induction_pool_size)

        all_names = data.TRAIN_NAMES + data.HELDOUT_NAMES
        all_places = data.TRAIN_PLACES + data.HELDOUT_PLACES
        all_objects = data.TRAIN_OBJECTS + data.HELDOUT_OBJECTS
        capitals = tuple(sorted({f.answer for f in self._facts if f.relation == "capital"}))
        regions = tuple(c[0] for c in data.COUNTRIES) + tuple(s[0] for s in data.US_STATES)
        years = tuple(f"{c}{yy:02d}" for c in data.CENTURIES for yy in self.year_suffixes[c])
        self._filler_pools: dict[str, tuple[str, ...]] = {
            "name": all_names, "person": data.PERSONS, "adj": data.ADJECTIVES, "animal": data.ANIMALS,
            "time": data.TIMES, "place": all_places, "object": all_objects,
            "event": data.TRAIN_EVENTS + data.HELDOUT_EVENTS, "region": regions, "city": capitals,
            "year": years,
        }
        words = set(years)
        for pool in self._filler_pools.values():
            words.update(pool)
        for fact in self._facts:
            words.update((fact.subject, fact.answer))
        self.fillers = FillerTokens(self.tokenizer, words)

        tok = self.tokenizer
        self._filler = compile_templates(data.FILLER_TEMPLATES, tok)
        self._filler_slots = tuple(tuple((s, self._filler_pools[s.rstrip("0123456789")]) for s in t.slots)
                                   for t in self._filler[0])
        self._ioi = {"train": compile_templates(data.TRAIN_IOI_TEMPLATES, tok),
                     "heldout": compile_templates(data.HELDOUT_IOI_TEMPLATES, tok)}
        self._fact_frames = {
            split: {rel: compile_templates(frames[rel], tok) for rel in data.RELATIONS}
            for split, frames in (("train", data.TRAIN_FACT_FRAMES), ("heldout", data.HELDOUT_FACT_FRAMES))
        }
        self._greater_than = {"train": compile_templates(data.TRAIN_GREATER_THAN_TEMPLATES, tok),
                              "heldout": compile_templates(data.HELDOUT_GREATER_THAN_TEMPLATES, tok)}
        self._year_answers = {c: year_answer_tokens(tok, c, self.year_suffixes[c]) for c in data.CENTURIES}
        self._century_token = {c: tok.encode(f" {c}")[0] for c in data.CENTURIES}

    # --- word lists ------------------------------------------------------------------------------
    @staticmethod
    def names(split: Split) -> tuple[str, ...]:
        check_split(split)
        return data.TRAIN_NAMES if split == "train" else data.HELDOUT_NAMES

    @staticmethod
    def places(split: Split) -> tuple[str, ...]:
        check_split(split)
        return data.TRAIN_PLACES if split == "train" else data.HELDOUT_PLACES

    @staticmethod
    def objects(split: Split) -> tuple[str, ...]:
        check_split(split)
        return data.TRAIN_OBJECTS if split == "train" else data.HELDOUT_OBJECTS

    @staticmethod
    def events(split: Split) -> tuple[str, ...]:
        check_split(split)
        return data.TRAIN_EVENTS if split == "train" else data.HELDOUT_EVENTS

    @staticmethod
    def ioi_templates(split: Split) -> tuple[str, ...]:
        check_split(split)
        return data.TRAIN_IOI_TEMPLATES if split == "train" else data.HELDOUT_IOI_TEMPLATES

    @staticmethod
    def fact_frames(split: Split) -> dict[str, tuple[str, ...]]:
        check_split(split)
        return dict(data.TRAIN_FACT_FRAMES if split == "train" else data.HELDOUT_FACT_FRAMES)

    @staticmethod
    def greater_than_templates(split: Split) -> tuple[str, ...]:
        check_split(split)
        return data.TRAIN_GREATER_THAN_TEMPLATES if split == "train" else data.HELDOUT_GREATER_THAN_TEMPLATES

    def facts(self, relation: str | None = None) -> tuple[Fact, ...]:
        """The facts the suite teaches (all of them occur in training, in the training frames)."""
        if relation is not None and relation not in data.RELATIONS:
            raise InvalidInputError(f"relation must be one of {data.RELATIONS}, got {relation!r}", field="relation")
        return tuple(f for f in self._facts if relation is None or f.relation == relation)

    def name_token(self, name: str) -> int:
        """The single token id of ``" " + name``."""
        return self.fillers.ids(name, True)[0]

    # --- training data ---------------------------------------------------------------------------
    def document(self, index: int) -> list[Sentence]:
        """The sentences of training row ``index`` (enough to fill ``n_ctx`` tokens after BOS)."""
        check_count(index, "index")
        rng = random.Random(f"{TASK_STREAM}/{self.seed}/train/{index}")
        sentences: list[Sentence] = []
        pending: list[list] = []  # [sentences still to wait, span tokens]
        length = 1
        while length < self.n_ctx:
            due = next((p for p in pending if p[0] <= 0), None)
            if due is not None:
                pending.remove(due)
                sentence = Sentence("induction_repeat", None, {}, list(due[1]))
            else:
                kind = rng.choices(self._kinds, cum_weights=self._cum_weights)[0]
                sentence = self._training_sentence(kind, rng, continued=bool(sentences))
                for p in pending:
                    p[0] -= 1
                if kind == "induction":
                    pending.append([rng.randint(0, 1), sentence.tokens])
            sentences.append(sentence)
            length += len(sentence.tokens)
        return sentences

    def training_row(self, index: int) -> list[int]:
        row = [self.bos]
        for sentence in self.document(index):
            row.extend(sentence.tokens)
        return row[:self.n_ctx]

    def training_rows(self, n_rows: int, first_row: int = 0) -> torch.Tensor:
        """Rows ``first_row .. first_row + n_rows - 1`` as a LongTensor ``[n_rows, n_ctx]``."""
        check_count(n_rows, "n_rows")
        check_count(first_row, "first_row")
        rows = [self.training_row(i) for i in range(first_row, first_row + n_rows)]
        return torch.tensor(rows, dtype=torch.long).reshape(n_rows, self.n_ctx)

    def training_batches(self, batch_size: int, first_row: int = 0) -> Iterator[torch.Tensor]:
        """Endless stream of ``[batch_size, n_ctx]`` batches: rows ``first_row``, ``first_row + 1``, ..."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be an integer >= 1, got {batch_size!r}", field="batch_size")
        check_count(first_row, "first_row")
        start = first_row
        while True:
            yield self.training_rows(batch_size, start)
            start += batch_size

    def _training_sentence(self, kind: str, rng: random.Random, *, continued: bool) -> Sentence:
        variant = 1 if continued else 0
        if kind == "filler":
            index = rng.randrange(len(self._filler[0]))
            template = self._filler[variant][index]
            values = {slot: rng.choice(pool) for slot, pool in self._filler_slots[index]}
        elif kind == "ioi":
            template = rng.choice(self._ioi["train"][variant])
            values = self._ioi_values(rng, "train", abba=rng.random() < 0.5)
        elif kind == "fact":
            fact = rng.choice(self._facts)
            template = rng.choice(self._fact_frames["train"][fact.relation][variant])
            values = {"X": fact.subject, "Y": fact.answer, "name": rng.choice(self._filler_pools["name"])}
        elif kind == "greater_than":
            template = rng.choice(self._greater_than["train"][variant])
            century = rng.choice(data.CENTURIES)
            suffixes = self.year_suffixes[century]
            first = rng.randrange(len(suffixes) - 1)
            second = rng.randrange(first + 1, len(suffixes))
            values = {"E": rng.choice(data.TRAIN_EVENTS),
                      "Y1": f"{century}{suffixes[first]:02d}", "Y2": f"{century}{suffixes[second]:02d}"}
        elif kind == "induction":
            length = rng.randint(*self.span_lengths)
            return Sentence("induction", None, {}, rng.sample(self.induction_pool, length))
        else:  # pragma: no cover - KINDS is closed
            raise AssertionError(kind)
        return Sentence(kind, template.text, values, template.render(values, self.fillers))

    def _ioi_values(self, rng: random.Random, split: str, *, abba: bool) -> dict[str, str]:
        io, s = rng.sample(self.names(split), 2)
        first, second = (io, s) if abba else (s, io)
        return {"N1": first, "N2": second, "S": s, "IO": io,
                "place": rng.choice(self.places(split)), "object": rng.choice(self.objects(split))}

    # --- vocabulary ------------------------------------------------------------------------------
    def vocabulary(self) -> list[int]:
        """Sorted token ids that can occur in training rows (exact for this suite's mix)."""
        return list(self._vocabulary)

    @functools.cached_property
    def _vocabulary(self) -> tuple[int, ...]:
        ids = {self.bos}
        active = {kind for kind, w in zip(KINDS, self.mix.weights()) if w > 0}
        variants = (0, 1)
        if "filler" in active:
            for v in variants:
                for template, slots in zip(self._filler[v], self._filler_slots):
                    ids |= template.token_set(dict(slots), self.fillers)
        if "ioi" in active:
            names = self.names("train")
            choices = {"N1": names, "N2": names, "S": names, "IO": names,
                       "place": self.places("train"), "object": self.objects("train")}
            for v in variants:
                for template in self._ioi["train"][v]:
                    ids |= template.token_set(choices, self.fillers)
        if "fact" in active:
            for relation in data.RELATIONS:
                facts = self.facts(relation)
                choices = {"X": [f.subject for f in facts], "Y": [f.answer for f in facts],
                           "name": self._filler_pools["name"]}
                for v in variants:
                    for template in self._fact_frames["train"][relation][v]:
                        ids |= template.token_set(choices, self.fillers)
        if "greater_than" in active:
            yy = self.year_suffixes
            choices = {"E": data.TRAIN_EVENTS,
                       "Y1": [f"{c}{y:02d}" for c in data.CENTURIES for y in yy[c][:-1]],
                       "Y2": [f"{c}{y:02d}" for c in data.CENTURIES for y in yy[c][1:]]}
            for v in variants:
                for template in self._greater_than["train"][v]:
                    ids |= template.token_set(choices, self.fillers)
        if "induction" in active:
            ids |= set(self.induction_pool)
        return tuple(sorted(ids))

    # --- evaluation probes -----------------------------------------------------------------------
    def ioi_examples(self, n: int, split: Split = "heldout") -> list[IOIExample]:
        """``n`` IOI prompts, alternating ABBA and BABA, from the split's templates and words."""
        check_split(split)
        check_count(n)
        rng = random.Random(f"{TASK_STREAM}/{self.seed}/ioi/{split}")
        templates = self._ioi[split][0]
        out = []
        for i in range(n):
            template_id = rng.randrange(len(templates))
            abba = i % 2 == 0
            values = self._ioi_values(rng, split, abba=abba)
            tokens = [self.bos, *templates[template_id].render(values, self.fillers, stop_at="IO")]
            out.append(IOIExample(tuple(tokens), self.name_token(values["IO"]), self.name_token(values["S"]),
                                  template_id, templates[template_id].text, "ABBA" if abba else "BABA"))
        return out

    def induction_examples(self, n: int, split: Split = "heldout", span_length: int | None = None
                           ) -> list[InductionExample]:
        """``n`` prompts with a random span repeated after a filler sentence (and their controls).

        Span tokens are distinct and occur nowhere else in the prompt, so a perfect induction
        mechanism scores exactly 1 and the control has nothing to copy from.
        """
        check_split(split)
        check_count(n)
        low, high = self.span_lengths
        if span_length is not None and not (isinstance(span_length, int) and 2 <= span_length <= 64):
            raise InvalidInputError(f"span_length must be an integer in [2, 64], got {span_length!r}",
                                    field="span_length")
        rng = random.Random(f"{TASK_STREAM}/{self.seed}/induction/{split}")
        out = []
        for _ in range(n):
            length = span_length if span_length is not None else rng.randint(low, high)
            prefix = [self.bos, *self._training_sentence("filler", rng, continued=False).tokens]
            middle = self._training_sentence("filler", rng, continued=True).tokens
            used = set(prefix) | set(middle)
            span = rng.sample([t for t in self.induction_pool if t not in used], length)
            used |= set(span)
            decoy = rng.sample([t for t in self.induction_pool if t not in used], length)
            first_start = len(prefix)
            repeat_start = first_start + length + len(middle)
            tokens = (*prefix, *span, *middle, *span)
            control = (*prefix, *decoy, *middle, *span)
            out.append(InductionExample(tokens, control, first_start, repeat_start, length))
        return out

    def fact_examples(self, split: Split = "heldout") -> list[FactExample]:
        """Every fact in every frame of the split (names in frames drawn deterministically)."""
        check_split(split)
        rng = random.Random(f"{TASK_STREAM}/{self.seed}/fact/{split}")
        out = []
        for relation in data.RELATIONS:
            for template in self._fact_frames[split][relation][0]:
                for fact in self.facts(relation):
                    values = {"X": fact.subject, "Y": fact.answer, "name": rng.choice(self._filler_pools["name"])}
                    tokens = [self.bos, *template.render(values, self.fillers, stop_at="Y")]
                    out.append(FactExample(tuple(tokens), self.fillers.ids(fact.answer, True)[0],
                                           relation, fact.subject, fact.answer, template.text))
        return out

    def greater_than_examples(self, n: int, split: Split = "heldout") -> list[GreaterThanExample]:
        """``n`` prompts ending where the second year's answer token comes: after its century token
        " CC" (the model continues "YY"), or, in the 1900s, after "the year" (it continues " 19YY")."""
        check_split(split)
        check_count(n)
        rng = random.Random(f"{TASK_STREAM}/{self.seed}/greater_than/{split}")
        templates = self._greater_than[split][0]
        events = self.events(split)
        out = []
        for _ in range(n):
            template = rng.choice(templates)
            century = rng.choice(data.CENTURIES)
            suffixes = self.year_suffixes[century]
            start = rng.choice(suffixes[:-1])
            values = {"E": rng.choice(events), "Y1": f"{century}{start:02d}"}
            tokens = [self.bos, *template.render(values, self.fillers, stop_at="Y2")]
            whole, year_tokens = self._year_answers[century]
            if not whole:
                tokens.append(self._century_token[century])
            out.append(GreaterThanExample(tuple(tokens), century, start, suffixes, year_tokens,
                                          tuple(yy > start for yy in suffixes)))
        return out


def _cumulative(weights: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


__all__ = ["KINDS", "Fact", "FactExample", "GreaterThanExample", "IOIExample", "InductionExample", "Sentence", "Split",
           "TaskMix", "TaskSuite", "TaskSuiteDataError"]
