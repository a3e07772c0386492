"""Hard caps and text checks shared by every request model (schemas.py, api_models.py).

The caps are in the OpenAPI document (``maxItems``), so a client, and a fuzzer, learns them; they
bound what one request can cost before any server limit (``http_limits``) is looked at. Each is
well above what a configurable server limit would allow, so the server's own limits stay the ones
that bite. Strings are checked for lone UTF-16 surrogates: JSON's ``"\\ud800"`` escape reads as a
Python string that no encoder accepts (the tokenizer, and the JSON answer echoing it, would fail).
"""

from __future__ import annotations

from typing import Any

MAX_LOSS_TOKENS = 256
"""targets + distractors of one loss: each costs a [batch, positions, vocab]-sized gather and
backward in a compute process (~200 KB each on GPT-2 small, so ~50 MB at the cap); room for a
greater-than loss typed by hand (every two-digit year, 00..99, on either side)."""
MAX_PROMPTS = 256
MAX_INTERVENTIONS = 1024
MAX_POSITIONS = 8192
"""slots of an explicit alignment, and entries per slot"""
MAX_HEAD_PAIRS = 4096
"""(layer, head) pairs: GPT-2 XL has 48 × 25 = 1,200 heads"""
MAX_TOKEN_IDS = 65_536


def _lone_surrogate_at(text: str) -> int | None:
    """Index of the first lone surrogate in ``text`` (None if there is none). A valid pair never
    reaches Python as two code points (the JSON reader joins ``\\ud83d\\ude00``), so any code point
    in U+D800..U+DFFF is lone."""
    for i, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            return i
    return None


def _find_surrogate(value: Any, where: str = "") -> str | None:
    if isinstance(value, str):
        at = _lone_surrogate_at(value)
        return None if at is None else f"{where}character {at}"
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if (found := _find_surrogate(item, f"{where}item {i}, ")) is not None:
                return found
    return None


def reject_lone_surrogates(value: Any) -> Any:
    """Field validator (mode "after", every field): a string, or a list of strings, holding a lone
    UTF-16 surrogate is refused, naming where. Nested models check their own fields."""
    if isinstance(value, (str, list, tuple)) and (found := _find_surrogate(value)) is not None:
        raise ValueError(f"text holds a lone UTF-16 surrogate ({found.rstrip(', ')}); send valid Unicode "
                         "(a surrogate pair for characters beyond U+FFFF)")
    return value
