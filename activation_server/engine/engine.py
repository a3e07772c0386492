"""The debugger engine: a model, its SAEs and a reference corpus, answering requests as plain
Python calls (the HTTP layer is a thin wrapper around this class).

An :class:`Engine` is immutable once built except for memos (reference-corpus activations for mean
and resample ablation; which tokens share an unembedding), filled under a lock; requests share nothing else,
so any number of threads may call it at once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pydantic_core
import torch

from mechscope.autoencoders import SAESplice
from mechscope.inference import GPT2, gpt2_tokenizer
from mechscope.inference.vocabulary import shared_unembedding_mask

from ..schemas import AttributionRequest, AttributionResult
from .shared_passes import answers_many


class Engine:
    def __init__(self, model: GPT2, saes: Sequence = (), reference_tokens: torch.Tensor | None = None):
        self.model = model
        self.tokenizer = gpt2_tokenizer()
        self.saes = {}
        for sae in saes:
            sae.requires_grad_(False).eval()  # gradients flow through activations, never into weights
            point = sae.config.hook_point
            if point in self.saes:
                raise ValueError(f"two SAEs at {point}")
            self.saes[point] = sae
        self._splices = {p: SAESplice(s, p) for p, s in self.saes.items()}
        if reference_tokens is None:
            reference_tokens = _default_reference_tokens(model)
        self.reference_tokens = reference_tokens
        self._reference_memo: dict[str, torch.Tensor] = {}
        self._shared_unembedding: torch.Tensor | None = None
        self._lock = threading.Lock()

    # --- SAEs ------------------------------------------------------------------------------------
    def sae_for(self, layer: int, side: str):
        """The SAE replacing layer ``layer``'s MLP (side 'mlp') or attention (side 'attn'), if any."""
        points = ([f"blocks.{layer}.hook_mlp_out", f"blocks.{layer}.mlp.hook_post"] if side == "mlp"
                  else [f"blocks.{layer}.hook_attn_out"])
        for p in points:
            if p in self.saes:
                return p
        return None

    def splices(self, points) -> list:
        return [self._splices[p] for p in points]

    def splices_for_hook(self, hook: str) -> list:
        """The splices a hook point needs to exist (an SAE's own points need that SAE spliced)."""
        return [s for p, s in self._splices.items() if hook.startswith(p + ".")]

    # --- reference corpus -------------------------------------------------------------------------
    def reference_activations(self, hook: str) -> torch.Tensor:
        """Activations at ``hook`` on the reference corpus, ``[rows, pos, ...]`` (memoised)."""
        with self._lock:
            if hook not in self._reference_memo:
                with torch.no_grad():
                    _, cache = self.model.run_with_cache(self.reference_tokens, names=[hook],
                                                         splices=self.splices_for_hook(hook))
                self._reference_memo[hook] = cache[hook]
            return self._reference_memo[hook]

    @property
    def shared_unembedding_tokens(self) -> torch.Tensor:
        """``[vocab]`` bool, tokens whose unembedding is shared with others (memoised)."""
        with self._lock:
            if self._shared_unembedding is None:
                self._shared_unembedding = shared_unembedding_mask(self.model)
            return self._shared_unembedding

    # --- requests -------------------------------------------------------------------------------
    def attribute(self, request: AttributionRequest) -> AttributionResult:
        """The node table (or a trace) for one request; bad input raises its typed error."""
        (result,) = self.attribute_many([request])
        if isinstance(result, Exception):
            raise result
        return result

    def attribute_many(self, requests: list[AttributionRequest]) -> list[AttributionResult | Exception]:
        """Several independent requests in shared passes; a request with bad input gets its error
        (an :class:`~mechscope.inference.errors.InvalidInputError`) in its slot, and so does one that
        makes the shared pass fail otherwise (the others are then answered alone)."""
        return [a if isinstance(a, Exception) else AttributionResult.model_validate(a)
                for a in answers_many(self, requests)]

    def attribute_many_json(self, requests: list[AttributionRequest]) -> list[bytes | Exception]:
        """:meth:`attribute_many` answered as the JSON of each :class:`AttributionResult`, built
        without making the models (the server's path: the answers only go over the wire)."""
        return [a if isinstance(a, Exception) else pydantic_core.to_json(a) for a in answers_many(self, requests)]


def _default_reference_tokens(model: GPT2, rows: int = 32) -> torch.Tensor:
    """Reference corpus for mean/resample ablation: rows of the organism's task suite."""
    from mechscope.datasets.task_suite import TaskSuite
    n_ctx = min(128, model.cfg.n_ctx)
    return TaskSuite(seed=12345, n_ctx=n_ctx).training_rows(rows, first_row=50_000_000)
