"""Request and result types of the debugger engine (pydantic v2).

The engine's Python functions take and return these models, and the HTTP API serves the same
models, so a script and the browser see identical shapes. Vocabulary (README: Glossary): a *component*
is a unit with weights; a *node* is one invocation of a component on one prompt — a neuron or latent
at one token, a head at one (query, key) pair.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .schema_checks import (MAX_HEAD_PAIRS, MAX_INTERVENTIONS, MAX_LOSS_TOKENS, MAX_POSITIONS, MAX_PROMPTS,
                            reject_lone_surrogates)

NodeKind = Literal["embedding", "pos_embedding", "attn_head", "mlp_neuron", "sae_latent", "sae_error"]
InterventionMode = Literal["zero", "mean", "resample", "patch"]
MlpSide = Literal["neurons", "latents"]
AttnSide = Literal["heads", "latents"]
TraceThrough = Literal["pre", "q", "k", "qk", "v"]
LossKind = Literal["logit_diff", "log_prob", "kl"]
Alignment = Literal["end", "start"]
TotalEffectLN = Literal["frozen", "live"]

NonNegInt = Annotated[int, Field(ge=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    _text_is_unicode = field_validator("*")(reject_lone_surrogates)


class NodeRef(Strict):
    """One node. ``position`` is the token position (the query position for heads); for heads
    ``key_position`` picks one (query, key) pair, or None for the head's whole output at the query.
    ``sae`` names the hook point of the SAE a latent belongs to. Negative positions count from the
    end of the prompt (-1 = last token)."""

    kind: NodeKind
    layer: int | None = Field(default=None, ge=0, description="block index (None for embeddings)")
    index: NonNegInt = Field(default=0, description="neuron / head / latent index (0 for embeddings)")
    position: int = Field(description="token position; query position for heads; negative counts from the end")
    key_position: int | None = Field(default=None, description="heads only: key position of a (query, key) pair")
    sae: str | None = Field(default=None, description="SAE latents/errors: the SAE's hook point")

    @model_validator(mode="after")
    def _check(self) -> "NodeRef":
        needs_layer = self.kind not in ("embedding", "pos_embedding")
        if needs_layer and self.layer is None:
            raise ValueError(f"a {self.kind} node needs a layer")
        if self.kind in ("sae_latent", "sae_error") and not self.sae:
            raise ValueError(f"a {self.kind} node needs sae (the SAE's hook point)")
        if self.key_position is not None and self.kind != "attn_head":
            raise ValueError("key_position is only meaningful for attn_head nodes")
        return self


class NodeIntervention(Strict):
    """Ablate (zero / mean / resample) or patch one node. ``patch`` copies the node's value from
    prompt ``source_prompt`` of the same request (positions aligned as the request says)."""

    node: NodeRef
    mode: InterventionMode = "zero"
    source_prompt: NonNegInt | None = None

    @model_validator(mode="after")
    def _check(self) -> "NodeIntervention":
        if self.mode == "patch" and self.source_prompt is None:
            raise ValueError("a patch needs source_prompt (the index of the prompt to copy from)")
        return self


class PromptSpec(Strict):
    text: str = Field(min_length=1, description="the prompt text")
    interventions: list[NodeIntervention] = Field(default_factory=list, max_length=MAX_INTERVENTIONS)
    prepend_bos: bool = Field(default=True, description="start with <|endoftext|>, as GPT-2 and the organism were trained")


class LossSpec(Strict):
    """The scalar explained. ``logit_diff`` (default): mean logit of ``targets`` minus mean logit of
    ``distractors`` at ``position`` (default: the last token), final LayerNorm scale held constant.
    ``log_prob``: mean log-probability of the targets (a target of several tokens is scored as a
    continuation). ``kl``: KL(reference prompt's next-token distribution || this prompt's)."""

    kind: LossKind = "logit_diff"
    targets: list[str] = Field(default_factory=list, max_length=MAX_LOSS_TOKENS,
                               description="target tokens as text, e.g. ' Mary'")
    distractors: list[str] = Field(default_factory=list, max_length=MAX_LOSS_TOKENS)
    position: int = -1
    reference_prompt: NonNegInt = 0

    @model_validator(mode="after")
    def _cap_tokens(self) -> "LossSpec":
        n = len(self.targets) + len(self.distractors)
        if n > MAX_LOSS_TOKENS:
            raise ValueError(f"{n} targets + distractors; at most {MAX_LOSS_TOKENS} together")
        return self


class TraceSpec(Strict):
    """Attribute one node instead of the loss: a neuron's or latent's pre-activation (``pre``); a
    head's attention logit through its query (``q``), key (``k``) or both (``qk``); or a head's write
    through its value (``v``), projected on ``downstream``'s gradient (the loss when None)."""

    node: NodeRef
    through: TraceThrough = "pre"
    downstream: NodeRef | None = None


class AttributionRequest(Strict):
    prompts: list[PromptSpec] = Field(min_length=1, max_length=MAX_PROMPTS)
    loss: LossSpec
    mlp: MlpSide = "neurons"
    attention: AttnSide = "heads"
    trace: TraceSpec | None = None
    top_k: int = Field(default=20, ge=1)
    alignment: Alignment = "end"
    positions: list[Annotated[list[int], Field(max_length=MAX_POSITIONS)]] | None = Field(
        default=None, max_length=MAX_PROMPTS, description="explicit alignment: positions[i][j] is prompt i's position for shared slot j")
    # --- issue 23: how the estimated total effect is linearised, and real ablations beside it ---
    total_effect_ln: TotalEffectLN = Field(
        default="live", description=(
            "linearisation point of the estimated total effect (README: Glossary). 'live': the true gradient "
            "of the loss (attribution patching; the final LayerNorm scale follows the node), the default "
            "because it ranks nodes the way ablating them does (scripts/eval_attribution.py). 'frozen': "
            "the final LayerNorm scale held constant (TDB's convention). Direct effects close exactly in "
            "both modes (they always read the frozen-scale gradient). Traces keep their frozen read point."))
    total_effect_softmax: bool = Field(
        default=False, description=(
            "log_prob losses: estimate each node's removal linearly up to the logits (its targets' and the clean "
            "run's top 32 predictions, from one more batched pass of that many rows) and recompute the "
            "log-probability exactly from them. On a prompt the model gets right the softmax is saturated and "
            "activation x gradient is ~0 while ablating a node the prediction rests on costs nats; this estimate "
            "ranks such nodes as ablating them does (scripts/eval_attribution.py: live_softmax)"))
    exact_top_n: int = Field(
        default=0, ge=0, le=200, description=(
            "zero-ablate each of the first N rows of the node table for real (one batched pass, one row per "
            "node) and report loss(clean) - loss(ablated) as exact_effect beside the estimate (loss "
            "explanations only; 0: none)"))
    graddrop: bool = Field(
        default=False, description=(
            "also give each row its GradDrop score (AtP*): the mean over the other layers of |estimate with that "
            "layer's gradient dropped|; a row whose score is much larger than |total_effect| has paths that "
            "cancel, and its estimate may understate what ablating it does (loss explanations only; one more "
            "batched pass of n_layers rows per prompt)"))



class NodeValues(Strict):
    activation: float
    write_magnitude: float
    direct_effect: float
    total_effect: float
    attention_prob: float | None = None
    # absent from the JSON unless asked for (exact_top_n / graddrop), as the server's answers are
    exact_effect: float | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="loss(clean) - loss(node zero-ablated), measured (exact_top_n rows only)")
    graddrop: float | None = Field(default=None, exclude_if=lambda v: v is None,
                                   description="GradDrop score (requests with graddrop only)")


class NodeRow(Strict):
    """One node of the table, with its values on each prompt (None where the node does not exist)."""

    key: str
    kind: NodeKind
    layer: int | None
    index: int
    sae: str | None = None
    positions: list[int | None]
    key_positions: list[int | None] | None = None
    values: list[NodeValues | None]


class TokenPrediction(Strict):
    token: str
    token_id: int
    logit: float
    prob: float
    rank: int


class TokenSummary(Strict):
    """Per-token sums of estimated total effects (and direct effects) by component type."""

    token: str
    embeddings: float
    mlp: float
    attention_by_query: float
    attention_by_key: float
    direct_embeddings: float
    direct_mlp: float
    direct_attention_by_query: float
    direct_attention_by_key: float


class PromptResult(Strict):
    tokens: list[str]
    token_ids: list[int]
    loss: float
    loss_position: int
    top_predictions: list[TokenPrediction]
    bottom_predictions: list[TokenPrediction]
    target_predictions: list[TokenPrediction]
    token_summaries: list[TokenSummary]
    bias_direct_effect: float = Field(description="direct effect of every bias, SAE b_dec and the final LN bias")


class AttributionResult(Strict):
    explained: str = Field(description="what the table attributes: the loss, or the traced node")
    prompts: list[PromptResult]
    nodes: list[NodeRow]


# --- patching --------------------------------------------------------------------------------------
SweepKind = Literal["heads", "heads_by_position", "resid_pre", "attn_out", "mlp_out"]


class PatchingSweepRequest(Strict):
    """Patch each component (or component × position) from the clean prompt into the corrupted one
    (denoising) and report how much of the clean loss it restores:
    ``(loss_patched - loss_corrupted) / (loss_clean - loss_corrupted)``. Both prompts must have the
    same number of tokens (positions correspond one to one)."""

    clean: str = Field(min_length=1)
    corrupted: str = Field(min_length=1)
    loss: LossSpec
    kind: SweepKind = "heads"
    prepend_bos: bool = Field(default=True, description="start with <|endoftext|>, as GPT-2 and the organism were trained")


class PatchingSweepResult(Strict):
    kind: SweepKind
    axes: list[str] = Field(description="names of the axes of `values`, e.g. ['layer', 'head']")
    values: list[list[float | None]] | list[list[list[float | None]]] = Field(
        description="normalised restored loss per cell (null when clean and corrupted losses are equal)")
    raw_loss: list[list[float]] | list[list[list[float]]] = Field(description="the loss of each patched run")
    clean_loss: float
    corrupted_loss: float
    tokens: list[str]


class PathPatchingRequest(Strict):
    """Exact path patching (Wang et al., 2022): the effect of sender heads on the loss *only through*
    the receiver heads' query, key and/or value inputs. Senders take their corrupted-run output;
    every other head is frozen to its clean output while the receivers' inputs are recomputed."""

    clean: str = Field(min_length=1)
    corrupted: str = Field(min_length=1)
    loss: LossSpec
    senders: list[tuple[NonNegInt, NonNegInt]] = Field(min_length=1, max_length=MAX_HEAD_PAIRS,
                                                       description="(layer, head) pairs")
    receivers: list[tuple[NonNegInt, NonNegInt]] = Field(default_factory=list, max_length=MAX_HEAD_PAIRS,
                                                         description="(layer, head) pairs; empty = straight to the logits")
    receiver_inputs: list[Literal["q", "k", "v"]] = Field(default_factory=lambda: ["q", "k", "v"], max_length=3)
    prepend_bos: bool = Field(default=True, description="start with <|endoftext|>, as GPT-2 and the organism were trained")


class PathPatchingResult(Strict):
    clean_loss: float
    corrupted_loss: float
    patched_loss: float
    restored_fraction: float | None = Field(
        description="(patched - clean) / (corrupted - clean): 1 = senders' full effect; null when undefined")


# --- lenses ------------------------------------------------------------------------------------------
class LogitLensRequest(Strict):
    prompt: str = Field(min_length=1)
    position: int = -1
    targets: list[str] = Field(default_factory=list, max_length=MAX_LOSS_TOKENS,
                               description="tokens whose probability is tracked per layer")
    top_k: int = Field(default=10, ge=1)
    prepend_bos: bool = Field(default=True, description="start with <|endoftext|>, as GPT-2 and the organism were trained")


class LensLayer(Strict):
    point: str = Field(description="hook point read, e.g. blocks.2.hook_resid_pre")
    top_tokens: list[TokenPrediction]
    target_probs: list[float]


class LogitLensResult(Strict):
    tokens: list[str]
    position: int
    layers: list[LensLayer]


class TokenEffect(Strict):
    token: str
    token_id: int
    value: float


class WriteTokensResult(Strict):
    """Tokens a component's write direction promotes and suppresses (through the final LayerNorm's
    weight and the unembedding; the direction is that of a unit activation)."""

    promoted: list[TokenEffect]
    suppressed: list[TokenEffect]


# --- attribution graph --------------------------------------------------------------------------------
class GraphRequest(Strict):
    prompt: str = Field(min_length=1)
    loss: LossSpec
    mlp: MlpSide = "neurons"
    attention: AttnSide = "heads"
    max_nodes: int = Field(default=24, ge=1, le=200)
    max_edges: int = Field(default=60, ge=1, le=1000)
    prepend_bos: bool = Field(default=True, description="start with <|endoftext|>, as GPT-2 and the organism were trained")


class GraphNode(Strict):
    id: str
    kind: Literal["embedding", "attn_head", "mlp_neuron", "sae_latent", "sae_error", "loss"]
    layer: int | None = Field(description="block index; -1 for embeddings, n_layer for the loss")
    index: int = 0
    position: int
    sae: str | None = None
    label: str
    total_effect: float


class GraphEdge(Strict):
    source: str
    target: str
    weight: float


class GraphResult(Strict):
    """Nodes and weighted edges. An edge u → v weighs how much u's activation changes v's
    pre-activation (first order, in the model with LayerNorm scales and attention patterns frozen),
    times ∂loss/∂(v's pre-activation); edges into the loss are direct effects."""

    loss: float
    tokens: list[str]
    nodes: list[GraphNode]
    edges: list[GraphEdge]


class HeadGridRequest(Strict):
    """The layer × head grid of one prompt (the view an IOI replication starts from)."""

    prompt: str = Field(min_length=1)
    loss: LossSpec
    prepend_bos: bool = Field(default=True, description="start with <|endoftext|>, as GPT-2 and the organism were trained")


class HeadGridResult(Strict):
    loss: float = Field(description="the objective on the prompt")
    direct_effect: list[list[float]] = Field(description="[layer][head]: the head's direct effect, summed over its pairs")
    total_effect: list[list[float]] = Field(description="[layer][head]: the estimated total effect, summed over its pairs")
    ablation_effect: list[list[float]] = Field(
        description="[layer][head]: objective − objective with the head zero-ablated at every position")
