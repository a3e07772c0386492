"""Server configuration: request limits, the compute pool, the cache, auth and CORS (plain frozen
dataclasses; ``mechscope serve`` fills them from flags and environment variables)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

LOCALHOST_ORIGIN_REGEX = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"
"""Default CORS allow-list: any port on the loopback host names."""

LOG_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"   # pid: --processes N logs

DEFAULT_VIEWER_DIR = Path(__file__).resolve().parents[2] / "neuron_viewer" / "dist"


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-request limits. ``max_prompt_tokens`` None means the model's context (n_ctx)."""

    max_prompt_tokens: int | None = None
    max_prompts: int = 8
    max_top_k: int = 200
    max_sweep_cells: int = 20_000
    max_new_tokens: int = 256
    max_interventions: int = 64
    max_body_bytes: int = 1_000_000

    def prompt_tokens(self, n_ctx: int) -> int:
        return n_ctx if self.max_prompt_tokens is None else min(self.max_prompt_tokens, n_ctx)


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    limits: Limits = dataclasses.field(default_factory=Limits)
    workers: int = 2
    """Threads running engine calls at once."""
    max_queue: int = 16
    """Engine calls allowed to wait for a worker; beyond that requests get 503 + Retry-After."""
    retry_after_s: int = 2
    batch_prompts: int = 16
    """Concurrent attribution requests share one forward/backward pass of at most this many prompts
    (a single request larger than this still runs, alone); 1 turns sharing off."""
    compute_processes: int = 0
    """Worker processes answering attribution requests, each with its own engine (see
    :mod:`.compute_processes`; the server's state must hold them); 0: the server process's threads."""
    gather_ms: float = 10.0
    """With compute processes: how long a call waits, after the last arrival or answer, for the
    clients it expects back (see :mod:`.coalescer`)."""
    cache_size: int = 128
    """Results kept in the LRU cache of identical requests (0 disables it)."""
    auth_token: str | None = None
    """When set, every /api/ route needs ``Authorization: Bearer <token>``."""
    allowed_origins: tuple[str, ...] | None = None
    """CORS allow-list; None = any localhost / 127.0.0.1 / [::1] origin."""
    viewer_dir: Path | None = DEFAULT_VIEWER_DIR

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.batch_prompts < 1:
            raise ValueError(f"batch_prompts must be >= 1, got {self.batch_prompts}")
        if self.compute_processes < 0:
            raise ValueError(f"compute_processes must be >= 0, got {self.compute_processes}")
        if self.gather_ms < 0:
            raise ValueError(f"gather_ms must be >= 0, got {self.gather_ms}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {self.max_queue}")
        if self.auth_token is not None and not self.auth_token.strip():
            raise ValueError("auth_token must not be empty")
