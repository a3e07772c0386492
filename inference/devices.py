"""Where and in which precision models, SAEs and activations live: ``--device`` and ``--dtype``.

``--device``: ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
``--dtype``: ``float32`` (default), ``bfloat16`` or ``float16`` (the weights and activations; the
engine's answers are float32 either way). Both also read ``MECHSCOPE_DEVICE`` / ``MECHSCOPE_DTYPE``.
Every command that loads a model (serve, run, datasets build, SAE training and evaluation) takes
them through :func:`add_device_arguments` and :func:`placement_from_args`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Mapping

import torch

from .errors import InvalidInputError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda``/``cuda:N`` checked against the GPUs there are."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if not _DEVICE.fullmatch(spec):
        raise InvalidInputError(f"unknown device {spec!r}: expected {DEVICE_CHOICES}", field="device")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidInputError(f"device {spec!r} asked for, but torch sees no CUDA GPU "
                                    f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
                                    "use --device cpu or auto", field="device")
        if device.index is not None and device.index >= count:
            raise InvalidInputError(f"device {spec!r}: there are {count} CUDA GPUs (cuda:0..cuda:{count - 1})",
                                    field="device")
    return device


def resolve_dtype(name: str | torch.dtype | None = "float32") -> torch.dtype:
    if isinstance(name, torch.dtype):
        if name not in DTYPES.values():
            raise InvalidInputError(f"unsupported dtype {name}: expected one of {', '.join(DTYPES)}", field="dtype")
        return name
    key = (name or "float32").strip().lower().removeprefix("torch.")
    if key not in DTYPES:
        raise InvalidInputError(f"unknown dtype {name!r}: expected one of {', '.join(DTYPES)}", field="dtype")
    return DTYPES[key]


@dataclasses.dataclass(frozen=True)
class Placement:
    """A resolved ``--device`` / ``--dtype`` pair (picklable: compute processes get it as it is)."""

    device: str = "cpu"
    dtype: str = "float32"

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @classmethod
    def resolve(cls, device: str | None = "auto", dtype: str | None = "float32") -> "Placement":
        torch_dtype = resolve_dtype(dtype)
        name = next(k for k, v in DTYPES.items() if v == torch_dtype)
        return cls(device=str(resolve_device(device)), dtype=name)


def add_device_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    parser.add_argument("--device", default=env.get("MECHSCOPE_DEVICE", "auto"), metavar="DEVICE",
                        help=f"{DEVICE_CHOICES} (default auto: CUDA when available; env MECHSCOPE_DEVICE)")
    parser.add_argument("--dtype", default=env.get("MECHSCOPE_DTYPE", "float32"), choices=list(DTYPES),
                        help="weights and activations (default float32; env MECHSCOPE_DTYPE)")


def placement_from_args(args: argparse.Namespace) -> Placement:
    return Placement.resolve(getattr(args, "device", "auto"), getattr(args, "dtype", "float32"))
