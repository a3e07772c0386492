"""GPT-2 model configuration, read from and written to Hugging Face's ``config.json`` layout."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .errors import CheckpointError

SUPPORTED_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu", "relu")


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    """The hyper-parameters of a GPT-2 model, named as in TransformerLens (Hugging Face's names —
    n_layer, n_head, n_embd, n_positions, n_inner, ... — appear only in :meth:`from_hf_dict` and
    :meth:`to_hf_dict`, at the checkpoint boundary)."""

    n_layers: int = 12
    n_heads: int = 12
    d_model: int = 768
    n_ctx: int = 1024
    d_vocab: int = 50257
    d_mlp: int | None = None
    """MLP width; None means 4 * d_model (filled in at construction)"""
    eps: float = 1e-5
    """LayerNorm epsilon"""
    act_fn: str = "gelu_new"
    name: str = "gpt2"

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise CheckpointError(f"d_model={self.d_model} (n_embd) is not divisible by n_heads={self.n_heads} (n_head)")
        if self.act_fn not in SUPPORTED_ACTIVATIONS:
            raise CheckpointError(f"activation_function {self.act_fn!r} is not supported; "
                                  f"expected one of {SUPPORTED_ACTIVATIONS}")
        if self.d_mlp is None:
            object.__setattr__(self, "d_mlp", 4 * self.d_model)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    # --- HF config.json ---------------------------------------------------------------------------
    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], name: str | None = None) -> "GPT2Config":
        model_type = d.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise CheckpointError(f"config.json has model_type {model_type!r}; only 'gpt2' checkpoints are supported")
        for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
            if d.get(flag):
                raise CheckpointError(f"config.json sets {flag}=true, which mechscope's GPT-2 does not implement")
        if d.get("scale_attn_weights") is False:
            raise CheckpointError("config.json sets scale_attn_weights=false, which mechscope's GPT-2 does not implement")
        if d.get("tie_word_embeddings") is False:
            raise CheckpointError("config.json sets tie_word_embeddings=false; mechscope's GPT-2 ties lm_head to wte")
        try:
            return cls(
                n_layers=int(d["n_layer"]), n_heads=int(d["n_head"]), d_model=int(d["n_embd"]),
                n_ctx=int(d.get("n_positions", d.get("n_ctx", 1024))),
                d_vocab=int(d.get("vocab_size", 50257)), d_mlp=d.get("n_inner"),
                eps=float(d.get("layer_norm_epsilon", 1e-5)),
                act_fn=d.get("activation_function", "gelu_new"),
                name=name or d.get("_name_or_path") or "gpt2",
            )
        except KeyError as e:
            raise CheckpointError(f"config.json lacks the required field {e.args[0]!r}") from None

    def to_hf_dict(self) -> dict[str, Any]:
        return {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
            "n_layer": self.n_layers, "n_head": self.n_heads, "n_embd": self.d_model,
            "n_positions": self.n_ctx, "n_ctx": self.n_ctx, "vocab_size": self.d_vocab,
            "n_inner": None if self.d_mlp == 4 * self.d_model else self.d_mlp, "layer_norm_epsilon": self.eps,
            "activation_function": self.act_fn, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
            "attn_pdrop": 0.0, "bos_token_id": 50256, "eos_token_id": 50256, "tie_word_embeddings": True,
            "scale_attn_weights": True, "initializer_range": 0.02,
        }

    @classmethod
    def from_json_file(cls, path: str | Path, name: str | None = None) -> "GPT2Config":
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot read GPT-2 config {path}: {e}") from None
        return cls.from_hf_dict(d, name=name)


PRESETS: dict[str, GPT2Config] = {
    "gpt2": GPT2Config(12, 12, 768, name="gpt2"),
    "gpt2-medium": GPT2Config(24, 16, 1024, name="gpt2-medium"),
    "gpt2-large": GPT2Config(36, 20, 1280, name="gpt2-large"),
    "gpt2-xl": GPT2Config(48, 25, 1600, name="gpt2-xl"),
}
