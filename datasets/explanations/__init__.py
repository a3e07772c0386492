"""Explanations for every node of a node dataset: what each MLP neuron, attention head and SAE latent
does, in words, scored by how well the words predict its activations.

* Explainers — one interface, ``explain(page, split) -> ExplainerOutput(text, method, details)``:
  :class:`OfflineExplainer` (no model, no network: token sets, n-gram context, positions, repeated
  tokens, heads' attend-from/to statistics, write-vector summaries) and :class:`LlmExplainer` (any
  OpenAI-compatible chat endpoint, configured from the environment).
* Simulators / scorers — :class:`OfflineSimulator`, :class:`LlmSimulator`; :func:`score_simulation`
  (Bills et al. 2023: correlation over all held-out tokens), detection balanced accuracy, and always
  the random-other-node and empty-explanation baselines.
* Storage — :class:`ExplanationStore` beside the dataset (atomic, resumable); TDB's
  ``explanations/{layer}/{index}.jsonl`` read and :func:`export_tdb_explanations`.
* :func:`explain_dataset` runs it all with a progress bar.
"""

from .examples import ExampleSplit, split_examples
from .hypothesis import parse, render, simulate
from .llm import LlmConfig, LlmExplainer, LlmSimulator
from .llm_client import ChatClient
from .offline import ExplainerOutput, OfflineExplainer
from .records import (Explanation, ExplanationError, LlmAuthError, LlmError, LlmNotConfiguredError,
                      LlmUnavailableError, NodeKey, UnknownExplainerError)
from .runner import ExplainReport, explain_dataset, make_explainer
from .scorer import OfflineSimulator, Simulator, detection_score, score_text
from .scoring import (SimulationScore, absolute_dev_explained_score, balanced_accuracy, correlation_score,
                      rsquared_score, score_simulation)
from .store import ExplanationStore, export_tdb_explanations

__all__ = [
    "ChatClient", "ExampleSplit", "ExplainReport", "Explanation", "ExplanationError", "ExplanationStore",
    "ExplainerOutput", "LlmAuthError", "LlmConfig", "LlmError", "LlmExplainer", "LlmNotConfiguredError",
    "LlmSimulator", "LlmUnavailableError", "NodeKey", "OfflineExplainer", "OfflineSimulator", "SimulationScore",
    "Simulator", "UnknownExplainerError", "absolute_dev_explained_score", "balanced_accuracy", "correlation_score",
    "detection_score", "explain_dataset", "make_explainer", "export_tdb_explanations", "parse", "render", "rsquared_score",
    "score_simulation", "score_text", "simulate", "split_examples",
]
