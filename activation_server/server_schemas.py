"""Request and result shapes that exist only over HTTP (the engine's own shapes live in schemas.py
and are served as they are): tokenizer round trips, server info, generation with interventions,
node pages and node activations, and the error body."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .schema_checks import MAX_INTERVENTIONS, MAX_PROMPTS, MAX_TOKEN_IDS, reject_lone_surrogates
from .schemas import NodeRef


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    _text_is_unicode = field_validator("*")(reject_lone_surrogates)


# --- health ------------------------------------------------------------------------------------------
class Health(_Strict):
    status: Literal["ok", "loading", "failed"]
    detail: str | None = None


# --- tokenizer ---------------------------------------------------------------------------------------
class TokenizeRequest(_Strict):
    text: str = Field(description="text to tokenize (may be empty)")
    prepend_bos: bool = Field(default=True, description="start with <|endoftext|>, as GPT-2 and the organism were trained")


class TokenizeResult(_Strict):
    ids: list[int]
    tokens: list[str] = Field(description="display string of each token")


class DetokenizeRequest(_Strict):
    ids: list[int] = Field(max_length=MAX_TOKEN_IDS, description="GPT-2 token ids")


class DetokenizeResult(_Strict):
    text: str
    tokens: list[str]


# --- server info -------------------------------------------------------------------------------------
class ModelInfo(_Strict):
    name: str
    n_layer: int
    n_head: int
    d_model: int
    d_head: int
    d_mlp: int
    n_ctx: int
    vocab_size: int
    activation_function: str
    known_token_ids: list[int] | None = Field(
        default=None, description="token ids with an embedding of their own, sorted; null when every token has one. "
        "The others share one embedding (a model organism never saw them): the model cannot tell them apart")


class SaeInfo(_Strict):
    hook_point: str
    layer: int | None = Field(description="block of the hook point (None outside blocks)")
    d_in: int
    n_latents: int
    activation: str
    k: int | None = None
    input_normalization: str
    source: str | None = Field(default=None, description="format the SAE was loaded from")


class DatasetInfo(_Strict):
    name: str
    description: str
    manifest: dict[str, Any] = Field(default_factory=dict)


class Limits(_Strict):
    max_prompt_tokens: int
    max_prompts: int
    max_top_k: int
    max_sweep_cells: int
    max_new_tokens: int
    max_interventions: int
    max_body_bytes: int


class ServerInfo(_Strict):
    version: str
    model: ModelInfo
    saes: list[SaeInfo]
    datasets: list[DatasetInfo]
    limits: Limits
    auth_required: bool


# --- write tokens ------------------------------------------------------------------------------------
class WriteTokensRequest(_Strict):
    node: NodeRef = Field(description="an mlp_neuron or sae_latent (position is ignored)")
    k: int = Field(default=10, ge=1, description="how many promoted and suppressed tokens")


# --- generation --------------------------------------------------------------------------------------
class ComponentRef(_Strict):
    """A component (not a node): an MLP neuron, an attention head or an SAE latent, at every position."""

    kind: Literal["mlp_neuron", "attn_head", "sae_latent"]
    layer: int = Field(ge=0)
    index: int = Field(ge=0)
    sae: str | None = Field(default=None, description="sae_latent: the SAE's hook point")

    @model_validator(mode="after")
    def _check(self) -> "ComponentRef":
        if self.kind == "sae_latent" and not self.sae:
            raise ValueError("an sae_latent component needs sae (the SAE's hook point)")
        if self.kind != "sae_latent" and self.sae is not None:
            raise ValueError("sae is only meaningful for sae_latent components")
        return self


class GenerationIntervention(_Strict):
    """``zero``: ablate the component at every position (prompt and generated tokens).
    ``steer``: add ``scale`` to its activation at every position — for a neuron, its post-GELU value;
    for a latent, ``scale`` × its decoder direction at the SAE's hook point (heads cannot be steered)."""

    component: ComponentRef
    action: Literal["zero", "steer"] = "zero"
    scale: float = Field(default=0.0, allow_inf_nan=False, ge=-1e4, le=1e4)
    positions: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None, max_length=4096, description="prompt token positions (0 is <|endoftext|> when prepended) where "
        "the intervention acts; null: every position, generated tokens included")


class GenerateRequest(_Strict):
    prompts: list[str] = Field(min_length=1, max_length=MAX_PROMPTS, description="prompts continued in one batch")
    max_new_tokens: int = Field(default=20, ge=0)
    temperature: float = Field(default=0.0, ge=0.0, le=100.0, allow_inf_nan=False, description="0 = greedy")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    prepend_bos: bool = Field(default=True, description="start with <|endoftext|>, as GPT-2 and the organism were trained")
    interventions: list[GenerationIntervention] = Field(default_factory=list, max_length=MAX_INTERVENTIONS)


class Completion(_Strict):
    prompt: str
    text: str = Field(description="the generated text (without the prompt)")
    token_ids: list[int]
    tokens: list[str]


class GenerateResult(_Strict):
    completions: list[Completion]


# --- nodes -------------------------------------------------------------------------------------------
DatasetNodeKind = Literal["mlp_neuron", "attn_head", "sae_latent"]


class NodePage(_Strict):
    """What a dataset knows about one component: top-activating examples, samples, statistics.
    ``data`` is the dataset's own record, passed through as JSON."""

    dataset: str
    kind: str
    layer: int
    index: int
    data: dict[str, Any]


class NodeActivationsRequest(_Strict):
    component: ComponentRef
    prompts: list[str] = Field(min_length=1, max_length=MAX_PROMPTS)
    prepend_bos: bool = Field(default=True, description="start with <|endoftext|>, as GPT-2 and the organism were trained")
    head_value: Literal["write_norm", "attention_prob"] = Field(
        default="write_norm",
        description="heads: ‖p·v_k W_O‖ (TDB's attn_write_norm) or the attention probability per (query, key)")


class PromptActivations(_Strict):
    tokens: list[str]
    token_ids: list[int]
    values: list[float] | None = Field(default=None, description="neurons and latents: one value per token")
    matrix: list[list[float]] | None = Field(
        default=None, description="heads: row q holds the values for keys 0..q (lower triangle)")


class NodeActivationsResult(_Strict):
    component: ComponentRef
    prompts: list[PromptActivations]
    max_value: float = Field(description="largest value over all prompts (for display scaling)")


# --- errors --------------------------------------------------------------------------------------
class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    ctx: dict[str, Any] | None = None


class ValidationErrorBody(BaseModel):
    detail: list[ErrorItem]


class MessageErrorBody(BaseModel):
    detail: str
    error_id: str | None = None


