"""Write files exactly as the public projects lay them out (independently of mechscope's savers)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file


def write_openai_pt(path: Path, tensors: dict[str, torch.Tensor], activation: str = "ReLU", k: int | None = None,
                    extra: dict | None = None, drop: tuple[str, ...] = ()) -> Path:
    """An OpenAI sparse_autoencoder state dict, as ``Autoencoder.state_dict()`` + torch.save writes it."""
    n = tensors["b_enc"].shape[0]
    state = {
        "pre_bias": tensors["b_dec"].clone(),
        "latent_bias": tensors["b_enc"].clone(),
        "stats_last_nonzero": torch.arange(n, dtype=torch.long),
        "latents_activation_frequency": torch.linspace(0, 1, n),
        "latents_mean_square": torch.linspace(1, 2, n),
        "encoder.weight": tensors["W_enc"].t().contiguous(),
        "decoder.weight": tensors["W_dec"].t().contiguous(),
        "activation": activation,
        "activation_state_dict": {"k": k, "postact_fn": "ReLU"} if activation == "TopK" else {},
    }
    state.update(extra or {})
    for key in drop:
        state.pop(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def write_saelens_dir(directory: Path, tensors: dict[str, torch.Tensor], cfg: dict, sparsity: torch.Tensor | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "sae_weights.safetensors"))
    (directory / "cfg.json").write_text(json.dumps(cfg))
    if sparsity is not None:
        save_file({"sparsity": sparsity}, str(directory / "sparsity.safetensors"))
    return directory


def v6_cfg(architecture: str, d_in: int, d_sae: int, hook: str = "blocks.2.hook_resid_pre", **extra) -> dict:
    cfg = {
        "architecture": architecture,
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "model_name": "gpt2-small",
            "hook_name": hook,
            "hook_layer": 2,
            "hook_head_index": None,
            "prepend_bos": True,
            "context_size": 128,
            "sae_lens_version": "6.5.1",
            "sae_lens_training_version": "6.5.1",
        },
    }
    cfg.update(extra)
    return cfg


def pre6_cfg(d_in: int, d_sae: int, hook: str = "blocks.3.hook_resid_pre") -> dict:
    """Like jbloom/GPT2-Small-SAEs-Reformatted: a whole training-runner config, no architecture."""
    return {
        "model_name": "gpt2-small",
        "hook_point": hook,
        "hook_point_layer": 3,
        "hook_point_head_index": None,
        "dataset_path": "Skylion007/openwebtext",
        "is_dataset_tokenized": False,
        "context_size": 128,
        "d_in": d_in,
        "d_sae": d_sae,
        "expansion_factor": d_sae // d_in,
        "device": "mps",
        "dtype": "torch.float32",
        "b_dec_init_method": "geometric_median",
        "l1_coefficient": 8e-05,
        "lr": 0.0004,
        "activation_fn_str": "relu",
        "run_name": "24576-L1-8e-05-LR-0.0004-Tokens-3.000e+08",
    }
