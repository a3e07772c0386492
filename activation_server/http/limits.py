"""Server-side limits on requests (on top of the engine's own validation). A violation raises
:class:`LimitExceeded` naming the field and the limit; the app answers it 422."""

from __future__ import annotations

from mechscope.inference import gpt2_tokenizer

from ..server_schemas import GenerateRequest, NodeActivationsRequest, WriteTokensRequest
from .config import Limits
from .errors import LimitExceeded
from ..engine.prompts import check_loss
from ..schemas import (AttributionRequest, GraphRequest, LogitLensRequest, PatchingSweepRequest, PathPatchingRequest)


class LimitChecker:
    def __init__(self, limits: Limits, cfg):
        self.limits, self.cfg = limits, cfg
        self.max_prompt_tokens = limits.prompt_tokens(cfg.n_ctx)

    # --- single checks --------------------------------------------------------------------------
    def prompt(self, text: str, prepend_bos: bool, field: str) -> int:
        n = len(gpt2_tokenizer().encode(text, prepend_bos=prepend_bos))  # bounded by the body size limit
        if n > self.max_prompt_tokens:
            raise LimitExceeded(f"the prompt has {n} tokens; the limit is {self.max_prompt_tokens} (max_prompt_tokens)",
                                field=field, limit=self.max_prompt_tokens)
        return n

    def count(self, n: int, limit: int, field: str, what: str, name: str) -> None:
        if n > limit:
            raise LimitExceeded(f"{n} {what}; the limit is {limit} ({name})", field=field, limit=limit)

    def prompts(self, n: int, field: str = "prompts") -> None:
        self.count(n, self.limits.max_prompts, field, "prompts", "max_prompts")

    def top_k(self, k: int, field: str = "top_k") -> None:
        self.count(k, self.limits.max_top_k, field, "requested", "max_top_k")

    def interventions(self, n: int, field: str) -> None:
        self.count(n, self.limits.max_interventions, field, "interventions", "max_interventions")

    # --- per request ----------------------------------------------------------------------------
    def attribution(self, r: AttributionRequest) -> None:
        self.prompts(len(r.prompts))
        self.top_k(r.top_k)
        self.top_k(r.exact_top_n, "exact_top_n")   # issue 23: rows ablated for real, bounded like top_k
        for i, p in enumerate(r.prompts):
            self.prompt(p.text, p.prepend_bos, f"prompts[{i}].text")
            self.interventions(len(p.interventions), f"prompts[{i}].interventions")

    def sweep(self, r: PatchingSweepRequest) -> None:
        check_loss(r.loss, 2)  # the engine's own loss check (patching does not call it yet)
        n = self.prompt(r.clean, r.prepend_bos, "clean")
        self.prompt(r.corrupted, r.prepend_bos, "corrupted")
        cfg = self.cfg
        if r.kind in ("heads", "heads_by_position"):
            cells = cfg.n_layers * cfg.n_heads * (n if r.kind == "heads_by_position" else 1)
        else:
            cells = cfg.n_layers * n
        self.count(cells, self.limits.max_sweep_cells, "kind", f"sweep cells ({r.kind} on {n} tokens)",
                   "max_sweep_cells")

    def path(self, r: PathPatchingRequest) -> None:
        check_loss(r.loss, 2)
        self.prompt(r.clean, r.prepend_bos, "clean")
        self.prompt(r.corrupted, r.prepend_bos, "corrupted")
        heads = self.cfg.n_layers * self.cfg.n_heads
        self.count(len(r.senders), heads, "senders", "senders", "number of heads")
        self.count(len(r.receivers), heads, "receivers", "receivers", "number of heads")

    def graph(self, r: GraphRequest) -> None:
        self.prompt(r.prompt, r.prepend_bos, "prompt")

    def logit_lens(self, r: LogitLensRequest) -> None:
        self.prompt(r.prompt, r.prepend_bos, "prompt")
        self.top_k(r.top_k)
        self.count(len(r.targets), self.limits.max_top_k, "targets", "targets", "max_top_k")

    def write_tokens(self, r: WriteTokensRequest) -> None:
        self.top_k(r.k, "k")

    def generate(self, r: GenerateRequest) -> None:
        self.prompts(len(r.prompts))
        self.count(r.max_new_tokens, self.limits.max_new_tokens, "max_new_tokens", "new tokens", "max_new_tokens")
        self.interventions(len(r.interventions), "interventions")
        for i, text in enumerate(r.prompts):
            self.prompt(text, r.prepend_bos, f"prompts[{i}]")

    def node_activations(self, r: NodeActivationsRequest) -> None:
        self.prompts(len(r.prompts))
        for i, text in enumerate(r.prompts):
            self.prompt(text, r.prepend_bos, f"prompts[{i}]")
