"""The LLM explainer and simulator, over any OpenAI-compatible chat endpoint.

Configuration from the environment (nothing is needed for the offline path)::

    MECHSCOPE_LLM_BASE_URL   e.g. https://api.openai.com/v1 or http://127.0.0.1:8001/v1 (vLLM)
    MECHSCOPE_LLM_MODEL      e.g. gpt-4o-mini
    MECHSCOPE_LLM_API_KEY    optional (falls back to OPENAI_API_KEY)
    MECHSCOPE_LLM_CONCURRENCY, MECHSCOPE_LLM_CACHE (default ~/.cache/mechscope/llm)

Prompts follow OpenAI's neuron-explainer in spirit (wording is mechscope's): the explainer sees top
and quantile train examples as ``token<TAB>activation`` lines with activations scaled to integers
0-10 by the node's largest train activation, and answers after "the main thing this neuron does is
find"; the simulator sees the explanation and numbered token sequences and answers a JSON list of
0-10 integers per sequence.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mechscope.datasets.node_dataset.records import ATTN_HEAD, ExampleWindow, NodePageData

from .examples import ExampleSplit
from .llm_client import ChatClient
from .offline import ExplainerOutput
from .records import LlmError, LlmNotConfiguredError

EXPLANATION_PREFIX = "the main thing this neuron does is find"
MAX_EXPLAIN_WINDOWS = 12


@dataclass(frozen=True)
class LlmConfig:
    base_url: str
    model: str
    api_key: str | None = None
    concurrency: int = 4
    cache_dir: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "LlmConfig":
        env = dict(os.environ if env is None else env)
        base, model = env.get("MECHSCOPE_LLM_BASE_URL"), env.get("MECHSCOPE_LLM_MODEL")
        if not base or not model:
            raise LlmNotConfiguredError("no LLM is configured: set MECHSCOPE_LLM_BASE_URL (an OpenAI-compatible "
                                        "endpoint, e.g. https://api.openai.com/v1) and MECHSCOPE_LLM_MODEL, and "
                                        "MECHSCOPE_LLM_API_KEY if it needs a key; or use the offline explainer")
        cache = env.get("MECHSCOPE_LLM_CACHE") or str(Path.home() / ".cache" / "mechscope" / "llm")
        return cls(base, model, env.get("MECHSCOPE_LLM_API_KEY") or env.get("OPENAI_API_KEY"),
                   int(env.get("MECHSCOPE_LLM_CONCURRENCY", "4")), cache)

    def client(self) -> ChatClient:
        return ChatClient(self.base_url, self.model, self.api_key, max_concurrency=self.concurrency,
                          cache_dir=self.cache_dir)


def scaled(activations: Sequence[float], max_activation: float) -> list[int]:
    """Activations as integers 0-10 (negative -> 0), relative to ``max_activation``."""
    if max_activation <= 0:
        return [0 for _ in activations]
    return [int(min(10, max(0, np.floor(10 * a / max_activation)))) for a in activations]


def format_window(w: ExampleWindow, max_activation: float) -> str:
    lines = [f"{t}\t{a}" for t, a in zip(w.tokens, scaled(w.activations, max_activation))]
    return "<start>\n" + "\n".join(lines) + "\n<end>"


class LlmExplainer:
    name = "llm"

    def __init__(self, client: ChatClient):
        self.client = client

    def prompt(self, page: NodePageData, split: ExampleSplit) -> list[dict]:
        n_top = (len(page.top_examples) + 1) // 2
        windows = split.train[:n_top][: MAX_EXPLAIN_WINDOWS * 2 // 3]
        windows += [w for w in split.train[n_top:] if max(w.activations, default=0) > 0][: MAX_EXPLAIN_WINDOWS // 3]
        peak = max((max(w.activations, default=0.0) for w in windows), default=0.0)
        unit = "attention head (activation: how much it writes at each query token)" \
            if page.kind == ATTN_HEAD else "neuron"
        system = ("We are studying the units of a small language model. Each unit looks for something particular in "
                  "a short text. Read the texts below, where each line is a token, a tab, and the unit's activation "
                  "on it from 0 (none) to 10 (strongest), and say in one short sentence what the unit looks for. "
                  "Be specific; quote tokens when they matter.")
        body = "\n".join(format_window(w, peak) for w in windows)
        user = (f"Unit: {unit} {page.layer}/{page.index}\nActivations:\n{body}\n\n"
                f"Explanation of the unit's behaviour: {EXPLANATION_PREFIX}")
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def explain(self, page: NodePageData, split: ExampleSplit) -> ExplainerOutput:
        answer = self.client.chat(self.prompt(page, split), max_tokens=80, temperature=0.0).strip()
        if answer.lower().startswith(EXPLANATION_PREFIX):
            answer = answer[len(EXPLANATION_PREFIX):].strip()
        answer = answer.splitlines()[0].strip().rstrip(".") if answer else ""
        if not answer:
            raise LlmError(f"the LLM at {self.client.url} gave an empty explanation")
        return ExplainerOutput(answer, f"llm/{self.client.model}", {"model": self.client.model})


_LIST = re.compile(r"\[[\s\S]*\]")


class LlmSimulator:
    """Predicts 0-10 per token of each window from an explanation, in one call per scored text."""

    name = "llm-simulator"

    def __init__(self, client: ChatClient, *, fuzzing: bool = True):
        self.client = client
        self.fuzzing = LlmFuzzingScorer(client) if fuzzing else None

    def prompt(self, text: str, windows: Sequence[ExampleWindow]) -> list[dict]:
        seqs = "\n".join(f"Sequence {i}: {json.dumps(list(w.tokens), ensure_ascii=False)}"
                         for i, w in enumerate(windows))
        system = ("You predict a language-model unit's activation on each token from an explanation of what the unit "
                  "does. Answer only with a JSON list holding, per sequence, a list of integers from 0 to 10, one "
                  "per token, in order.")
        user = f"Explanation: the unit finds {text.strip() or '(no explanation)'}\n\n{seqs}"
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def simulate(self, text: str, windows: Sequence[ExampleWindow]) -> list[np.ndarray]:
        answer = self.client.chat(self.prompt(text, windows), max_tokens=8 * sum(len(w.tokens) for w in windows) + 64)
        match = _LIST.search(answer)
        try:
            rows = json.loads(match.group(0)) if match else None
        except json.JSONDecodeError:
            rows = None
        if not isinstance(rows, list):
            raise LlmError(f"the LLM at {self.client.url} did not answer a JSON list of predictions: {answer[:200]!r}")
        out = []
        for i, w in enumerate(windows):
            row = rows[i] if i < len(rows) and isinstance(rows[i], list) else []
            values = [float(min(10, max(0, v))) if isinstance(v, (int, float)) else 0.0 for v in row]
            values = (values + [0.0] * len(w.tokens))[: len(w.tokens)]
            out.append(np.asarray(values, dtype=np.float64))
        return out


class LlmFuzzingScorer:
    """Fuzzing (as in delphi): held-out top windows are shown twice, once with their activating
    tokens marked <<like this>> and once with as many other tokens marked; the model says per
    window whether the marked tokens are what the explanation describes. The score is the
    balanced accuracy (correct marks vs shuffled marks), in one call per node."""

    name = "llm-fuzzing"

    def __init__(self, client: ChatClient, seed: int = 0):
        self.client, self.seed = client, seed

    @staticmethod
    def marked(tokens: Sequence[str], marks: set[int]) -> str:
        return "".join(f"<<{t}>>" if i in marks else t for i, t in enumerate(tokens))

    def cases(self, windows: Sequence[ExampleWindow], key: str) -> list[tuple[str, bool]]:
        rng = np.random.default_rng(zlib.crc32(f"{self.seed}:{key}".encode()))  # the same marks on a rerun
        out = []
        for w in windows:
            acts = np.asarray(w.activations, dtype=np.float64)
            if not len(acts) or acts.max() <= 0:
                continue
            real = {int(i) for i in np.flatnonzero(acts >= 0.5 * acts.max())}
            others = [i for i in range(len(acts)) if i not in real]
            if not others:
                continue
            fake = {int(i) for i in rng.choice(others, size=min(len(real), len(others)), replace=False)}
            out += [(self.marked(w.tokens, real), True), (self.marked(w.tokens, fake), False)]
        return out

    def score(self, text: str, windows: Sequence[ExampleWindow], key: str = "") -> float | None:
        from .scoring import balanced_accuracy
        cases = self.cases(windows, key)
        if not cases:
            return None
        body = "\n".join(f"Text {i}: {json.dumps(c, ensure_ascii=False)}" for i, (c, _) in enumerate(cases))
        system = ("Some tokens of each text are marked <<like this>>. Say for each text whether the marked tokens are "
                  "what the explanation describes. Answer only with a JSON list of 0s and 1s, one per text.")
        answer = self.client.chat([{"role": "system", "content": system},
                                   {"role": "user", "content": f"Explanation: {text.strip()}\n\n{body}"}],
                                  max_tokens=4 * len(cases) + 16)
        match = _LIST.search(answer)
        try:
            guesses = json.loads(match.group(0)) if match else None
        except json.JSONDecodeError:
            guesses = None
        if not isinstance(guesses, list):
            raise LlmError(f"the LLM at {self.client.url} did not answer a JSON list of 0/1: {answer[:200]!r}")
        guesses = [bool(g) for g in guesses] + [False] * len(cases)
        return balanced_accuracy([label for _, label in cases], guesses[: len(cases)])
