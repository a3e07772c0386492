"""Loading and saving GPT-2 checkpoints in Hugging Face's layout.

``load_model`` accepts:
- ``"organism"``: the model organism shipped inside the package;
- a local directory with ``config.json`` and ``model.safetensors`` (or a legacy
  ``pytorch_model.bin``, read with ``torch.load(weights_only=True)`` only — never unpickled);
- a hub name (``gpt2``, ``gpt2-medium``, ``gpt2-large``, ``gpt2-xl`` or ``owner/repo``), downloaded
  once into the cache (see :mod:`.hub`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import GPT2Config
from .errors import CheckpointError
from .model import GPT2

ORGANISM_DIR = Path(__file__).parent / "organism"
HUB_ALIASES = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
_IGNORED_KEY = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")


def _read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    st, legacy = directory / "model.safetensors", directory / "pytorch_model.bin"
    if st.exists():
        try:
            return load_file(str(st))
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"cannot read {st}: {e}") from None
    if legacy.exists():
        try:
            return torch.load(legacy, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"refusing or unable to load {legacy} (only plain tensors are accepted, "
                                  f"never pickled code): {e}") from None
    raise CheckpointError(f"{directory} has neither model.safetensors nor pytorch_model.bin")


def normalise_state_dict(raw: dict[str, torch.Tensor], model: GPT2, source: str) -> dict[str, torch.Tensor]:
    """Map a checkpoint's keys onto ours: strip ``transformer.``, drop causal-mask buffers, check that
    ``lm_head.weight`` is tied, and fail naming every unknown, missing or mis-shaped tensor."""
    out: dict[str, torch.Tensor] = {}
    lm_head = None
    for key, value in raw.items():
        k = key.removeprefix("transformer.")
        if _IGNORED_KEY.match(k):
            continue
        if k == "lm_head.weight":
            lm_head = value
            continue
        out[k] = value
    expected = model.state_dict()
    unknown = sorted(set(out) - set(expected))
    missing = sorted(set(expected) - set(out))
    if unknown or missing:
        raise CheckpointError(f"{source}: checkpoint does not match a GPT-2 with {model.cfg.n_layers} layers — "
                              f"unknown keys {unknown[:10]}{'…' if len(unknown) > 10 else ''}, "
                              f"missing keys {missing[:10]}{'…' if len(missing) > 10 else ''}")
    bad = [f"{k}: {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
           for k, v in out.items() if v.shape != expected[k].shape]
    if bad:
        raise CheckpointError(f"{source}: tensor shapes do not match the config: {bad[:10]}")
    if lm_head is not None and not torch.equal(lm_head, out["wte.weight"]):
        raise CheckpointError(f"{source}: lm_head.weight differs from wte.weight; untied heads are not supported")
    return out


def load_checkpoint_dir(directory: str | Path, *, dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu", name: str | None = None) -> GPT2:
    directory = Path(directory)
    if not (directory / "config.json").exists():
        raise CheckpointError(f"{directory} has no config.json: not a Hugging Face GPT-2 checkpoint directory")
    cfg = GPT2Config.from_json_file(directory / "config.json", name=name or directory.name)
    with torch.device("meta"):
        model = GPT2(cfg)
    state = normalise_state_dict(_read_state_dict(directory), model, str(directory))
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, assign=True)
    return model.to(device).eval().requires_grad_(False)


def load_model(name_or_path: str | Path = "organism", *, revision: str = "main", cache_dir: str | Path | None = None,
               endpoint: str | None = None, dtype: torch.dtype = torch.float32,
               device: str | torch.device = "cpu", progress: bool = True) -> GPT2:
    """Load a GPT-2 (see module docstring). The model is in eval mode with gradients off for its
    parameters; activations can still carry gradients."""
    spec = str(name_or_path)
    if spec == "organism":
        if not (ORGANISM_DIR / "config.json").exists():
            raise CheckpointError(f"the model organism is missing from {ORGANISM_DIR}; "
                                  "train it with scripts/train_organism.py")
        return load_checkpoint_dir(ORGANISM_DIR, dtype=dtype, device=device, name="organism")
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_checkpoint_dir(path, dtype=dtype, device=device)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise CheckpointError(f"{spec} is not a directory; pass a directory containing config.json and "
                              "model.safetensors, 'organism', or a hub repo id such as 'gpt2'")
    from .hub import download_hub_files
    repo = HUB_ALIASES.get(spec, spec)
    local = download_hub_files(repo, ["config.json"], revision=revision, cache_dir=cache_dir, endpoint=endpoint,
                               alternatives=[("model.safetensors", "pytorch_model.bin")], progress=progress)
    return load_checkpoint_dir(local, dtype=dtype, device=device, name=spec)


def save_pretrained(model: GPT2, directory: str | Path, *, storage_dtype: torch.dtype = torch.float32) -> Path:
    """Write ``config.json`` and ``model.safetensors`` so that both mechscope and
    ``transformers.GPT2LMHeadModel.from_pretrained`` load the model. ``storage_dtype=torch.float16``
    halves the file; both loaders cast back to float32 by default."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {**model.cfg.to_hf_dict(), "torch_dtype": "float32"}
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().to(storage_dtype).contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory
