"""Request and response models of the explanation endpoints (see :mod:`.http.routes.explanations`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ExplanationKind = Literal["mlp_neuron", "attn_head", "sae_latent"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExplanationNode(_Strict):
    kind: ExplanationKind
    layer: int | None = Field(default=None, ge=0, le=10_000)
    index: int = Field(ge=0, le=10**9)
    sae: str | None = Field(default=None, max_length=200, description="sae_latent: the SAE's hook point")


class ExplanationModel(BaseModel):
    """One scored explanation: ``score`` is the simulation score (correlation of simulated and real
    activations over every held-out token); ``baselines`` the same for a random other node's
    explanation ('random') and the empty one ('empty')."""

    text: str
    method: str
    explainer: str
    score: float | None = None
    scorer: str | None = None
    baselines: dict[str, float | None] = Field(default_factory=dict)
    detection: float | None = Field(default=None, description="balanced accuracy, top vs random held-out windows")
    fuzzing: float | None = Field(default=None, description="LLM fuzzing balanced accuracy (LLM explanations)")


class NodeExplanations(BaseModel):
    dataset: str
    key: str = Field(description="kind:layer:index, or sae_latent:<hook point>:index")
    kind: str
    layer: int | None
    index: int
    sae: str | None = None
    explanations: list[ExplanationModel]


class ExplanationLookupRequest(_Strict):
    nodes: list[ExplanationNode] = Field(max_length=5000)
    dataset: str | None = Field(default=None, max_length=200)


class ExplanationBrief(BaseModel):
    text: str
    score: float | None = None
    method: str
    explainer: str


class ExplanationLookupResult(BaseModel):
    """The best explanation per node key (nodes without one are left out)."""

    explanations: dict[str, ExplanationBrief]


class ExplanationHit(BaseModel):
    dataset: str
    key: str
    kind: str
    layer: int | None
    index: int
    sae: str | None = None
    explanation: ExplanationBrief
    matched: int = Field(description="how many query words the explanation matched")


class ExplanationSearchResult(BaseModel):
    query: str
    hits: list[ExplanationHit]


class ExplainNodeRequest(ExplanationNode):
    explainer: Literal["offline", "llm"] = "offline"
    dataset: str | None = Field(default=None, max_length=200)
