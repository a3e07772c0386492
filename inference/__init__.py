"""mechscope.inference — a hook-instrumented GPT-2 in plain PyTorch.

    from mechscope.inference import load_model, gpt2_tokenizer, ZeroAblate
    model = load_model("organism")
    tokens, mask = gpt2_tokenizer().to_tokens(["When Mary and John went to the store, John gave a drink to"])
    logits, cache = model.run_with_cache(tokens, mask, names=["blocks.0.attn.hook_pattern"])
"""

from .cache import ActivationCache, run_with_cache
from .config import PRESETS, GPT2Config
from .errors import (CheckpointError, ChecksumError, DownloadError, EmptyPromptError, InvalidInputError,
                     MechscopeError, PromptTooLongError, ShapeMismatchError, TokenOutOfRangeError,
                     UnknownHookError, UnknownTokenError)
from .generation import Generation, generate
from .hooks import HookContext, Hooks, hook_axes, hooks_scope
from .interventions import (AddVector, Intervention, MaskedPatch, MeanAblate, OnRows, Patch, ResampleAblate,
                            SetActivation, ZeroAblate)
from .loading import load_checkpoint_dir, load_model, save_pretrained
from .model import GPT2
from .tokenizer import Tokenizer, gpt2_tokenizer

__all__ = [
    "ActivationCache", "AddVector", "CheckpointError", "ChecksumError", "DownloadError", "EmptyPromptError",
    "GPT2", "GPT2Config", "Generation", "HookContext", "Hooks", "InvalidInputError", "Intervention",
    "MaskedPatch", "MeanAblate", "MechscopeError", "OnRows", "PRESETS", "Patch", "PromptTooLongError", "ResampleAblate",
    "SetActivation", "ShapeMismatchError", "TokenOutOfRangeError", "Tokenizer", "UnknownHookError",
    "UnknownTokenError", "ZeroAblate", "generate", "gpt2_tokenizer", "hook_axes", "hooks_scope",
    "load_checkpoint_dir", "load_model", "run_with_cache", "save_pretrained",
]
