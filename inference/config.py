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
    """The hyper-parameters of a GPT-2 model (names follow HF ``GPT2Config``)."""

    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_positions: int = 1024
    vocab_size: int = 50257
    n_inner: int | None = None
    layer_norm_epsilon: float = 1e-5
    activation_function: str = "gelu_new"
    name: str = "gpt2"

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise CheckpointError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.activation_function not in SUPPORTED_ACTIVATIONS:
            raise CheckpointError(f"activation_function {self.activation_function!r} is not supported; "
                                  f"expected one of {SUPPORTED_ACTIVATIONS}")

    @property
    def d_model(self) -> int:
        return self.n_embd

    @property
    def n_layers(self) -> int:
        return self.n_layer

    @property
    def n_heads(self) -> int:
        return self.n_head

    @property
    def d_vocab(self) -> int:
        return self.vocab_size

    @property
    def d_head(self) -> int:
        return self.n_embd // self.n_head

    @property
    def d_mlp(self) -> int:
        return self.n_inner or 4 * self.n_embd

    @property
    def n_ctx(self) -> int:
        return self.n_positions

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
                n_layer=int(d["n_layer"]), n_head=int(d["n_head"]), n_embd=int(d["n_embd"]),
                n_positions=int(d.get("n_positions", d.get("n_ctx", 1024))),
                vocab_size=int(d.get("vocab_size", 50257)), n_inner=d.get("n_inner"),
                layer_norm_epsilon=float(d.get("layer_norm_epsilon", 1e-5)),
                activation_function=d.get("activation_function", "gelu_new"),
                name=name or d.get("_name_or_path") or "gpt2",
            )
        except KeyError as e:
            raise CheckpointError(f"config.json lacks the required field {e.args[0]!r}") from None

    def to_hf_dict(self) -> dict[str, Any]:
        return {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
            "n_layer": self.n_layer, "n_head": self.n_head, "n_embd": self.n_embd,
            "n_positions": self.n_positions, "n_ctx": self.n_positions, "vocab_size": self.vocab_size,
            "n_inner": self.n_inner, "layer_norm_epsilon": self.layer_norm_epsilon,
            "activation_function": self.activation_function, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
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
