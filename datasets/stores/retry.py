"""Exponential backoff for remote stores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mechscope.inference.errors import InvalidInputError


@dataclass(frozen=True)
class RetryEvent:
    """Passed to :attr:`RetryPolicy.on_retry` before each backoff sleep."""

    action: str
    key: str | None
    attempt: int
    """The attempt that just failed (1-based)."""
    delay_s: float
    error: BaseException


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to try a transient-failing request, and how long to wait in between.

    Attempt ``n`` (1-based) that fails transiently is followed by a sleep of
    ``min(initial_delay_s * multiplier ** (n - 1), max_delay_s)``; after ``attempts`` failures the
    store raises StoreUnavailableError. ``on_retry`` (if given) is called before every sleep, e.g.
    to log or count retries.
    """

    attempts: int = 5
    initial_delay_s: float = 0.5
    multiplier: float = 2.0
    max_delay_s: float = 8.0
    on_retry: Callable[[RetryEvent], None] | None = None

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise InvalidInputError(f"retry attempts must be >= 1, got {self.attempts}", field="attempts")
        if self.initial_delay_s < 0 or self.max_delay_s < 0 or self.multiplier < 1:
            raise InvalidInputError(
                f"invalid backoff (initial_delay_s={self.initial_delay_s}, multiplier={self.multiplier}, "
                f"max_delay_s={self.max_delay_s})",
                field="retry",
            )

    def delay_after(self, attempt: int) -> float:
        return min(self.initial_delay_s * self.multiplier ** (attempt - 1), self.max_delay_s)
