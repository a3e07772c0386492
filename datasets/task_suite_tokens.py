"""Sentence templates compiled to GPT-2 token pieces, and the token ids of slot fillers.

A sentence is rendered by concatenating pre-tokenised pieces instead of running the tokenizer on
every generated sentence: fast, and it makes the exact set of token ids that can occur computable
from the pieces. This is only valid because every slot boundary is a GPT-2 pre-tokenisation
boundary (a slot starts after a space or at the start of the sentence, and is followed by a space,
punctuation or the end); :class:`CompiledTemplate` checks the template text for that, and the tests
check that re-tokenising the decoded text gives back the same ids.

Each template exists in two variants: ``initial`` (the first sentence of a document, right after
``<|endoftext|>``, written without a leading space, like GPT-2's training text) and ``continued``
(every later sentence, preceded by one space).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mechscope.inference.errors import InvalidInputError
from mechscope.inference.tokenizer import Tokenizer

SLOT_PATTERN = re.compile(r"\{([A-Za-z]+[0-9]*)\}")
_ALLOWED_AFTER_SLOT = set(" .,;:!?'")


class TemplateError(InvalidInputError):
    """A sentence template whose slots could merge with the surrounding text into one token."""


@dataclass(frozen=True)
class Piece:
    """A literal run of token ids (``slot`` is None) or a slot, spaced or not."""

    literal: tuple[int, ...] = ()
    slot: str | None = None
    spaced: bool = False


class FillerTokens:
    """Token ids of slot fillers (words or short phrases), with and without a leading space."""

    def __init__(self, tokenizer: Tokenizer, words: Iterable[str]):
        self._ids: dict[tuple[str, bool], tuple[int, ...]] = {}
        for word in set(words):
            self._ids[(word, True)] = tuple(tokenizer.encode(" " + word))
            self._ids[(word, False)] = tuple(tokenizer.encode(word))

    def ids(self, word: str, spaced: bool) -> tuple[int, ...]:
        try:
            return self._ids[(word, spaced)]
        except KeyError:
            raise InvalidInputError(f"{word!r} is not a known slot filler", field="word") from None

    def __contains__(self, word: str) -> bool:
        return (word, True) in self._ids


class CompiledTemplate:
    """One sentence template, pre-tokenised in its ``initial`` or ``continued`` variant."""

    def __init__(self, text: str, tokenizer: Tokenizer, *, continued: bool):
        self.text = text
        self.continued = continued
        _check_slot_boundaries(text)
        source = " " + text if continued else text
        pieces: list[Piece] = []
        position = 0
        for match in SLOT_PATTERN.finditer(source):
            literal = source[position:match.start()]
            spaced = literal.endswith(" ")
            if spaced:
                literal = literal[:-1]
            if literal:
                pieces.append(Piece(literal=tuple(tokenizer.encode(literal))))
            pieces.append(Piece(slot=match.group(1), spaced=spaced))
            position = match.end()
        if source[position:]:
            pieces.append(Piece(literal=tuple(tokenizer.encode(source[position:]))))
        self.pieces: tuple[Piece, ...] = tuple(pieces)
        self.slots: tuple[str, ...] = tuple(dict.fromkeys(p.slot for p in pieces if p.slot))

    def render(self, values: Mapping[str, str], fillers: FillerTokens, *, stop_at: str | None = None) -> list[int]:
        """Token ids of the sentence; with ``stop_at``, only the ids before that slot's first use."""
        out: list[int] = []
        for piece in self.pieces:
            if piece.slot is None:
                out.extend(piece.literal)
            elif piece.slot == stop_at:
                return out
            else:
                out.extend(fillers.ids(values[piece.slot], piece.spaced))
        if stop_at is not None:
            raise InvalidInputError(f"template {self.text!r} has no slot {stop_at!r}", field="stop_at")
        return out

    def token_set(self, choices: Mapping[str, Iterable[str]], fillers: FillerTokens) -> set[int]:
        """Every token id a rendering can contain when slot ``s`` takes any value in ``choices[s]``.

        Exact because slot boundaries are pre-tokenisation boundaries: the tokens of a sentence are
        the union of the tokens of its pieces.
        """
        out: set[int] = set()
        for piece in self.pieces:
            if piece.slot is None:
                out.update(piece.literal)
            else:
                for word in choices[piece.slot]:
                    out.update(fillers.ids(word, piece.spaced))
        return out


def _check_slot_boundaries(text: str) -> None:
    for match in SLOT_PATTERN.finditer(text):
        before = text[match.start() - 1] if match.start() > 0 else " "
        after = text[match.end()] if match.end() < len(text) else " "
        if before != " " or after not in _ALLOWED_AFTER_SLOT:
            raise TemplateError(f"slot {match.group(0)} in template {text!r} must follow a space (or start the "
                                f"sentence) and be followed by a space or punctuation", field="template")
    if text != text.strip() or "  " in text:
        raise TemplateError(f"template {text!r} has leading, trailing or double spaces", field="template")


def compile_templates(texts: Sequence[str], tokenizer: Tokenizer
                      ) -> tuple[tuple[CompiledTemplate, ...], tuple[CompiledTemplate, ...]]:
    """(initial variants, continued variants) of ``texts``, index-aligned."""
    return (tuple(CompiledTemplate(t, tokenizer, continued=False) for t in texts),
            tuple(CompiledTemplate(t, tokenizer, continued=True) for t in texts))
