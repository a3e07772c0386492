"""Turning a request's prompts and loss into tensors: tokenization, padding, position alignment
across prompts of different lengths, and target token resolution."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from mechscope.inference import gpt2_tokenizer
from mechscope.inference.tokenizer import pad_token_rows

from ..errors import RequestError
from ..schemas import Alignment, LossSpec, PromptSpec
from ..server_schemas import DetokenizeRequest, DetokenizeResult, TokenizeRequest, TokenizeResult


@dataclasses.dataclass(frozen=True)
class PreparedPrompts:
    """A right-padded batch plus, per prompt, its length and its alignment slots."""

    tokens: torch.Tensor          # [batch, width]
    mask: torch.Tensor            # [batch, width]
    lengths: list[int]
    token_ids: list[list[int]]
    slots: list[list[int]]        # slots[i][pos] = the shared slot of prompt i's position pos

    @property
    def batch(self) -> int:
        return len(self.lengths)

    def position_of_slot(self, prompt: int, slot: int) -> int | None:
        try:
            return self.slots[prompt].index(slot)
        except ValueError:
            return None

    def resolve_position(self, prompt: int, position: int, field: str) -> int:
        n = self.lengths[prompt]
        p = position + n if position < 0 else position
        if not 0 <= p < n:
            raise RequestError(f"position {position} is out of range for prompt {prompt}, which has {n} tokens",
                               field=field)
        return p

    def aligned_position(self, source: int, source_pos: int, target: int) -> int | None:
        """The position in prompt ``target`` that shares a slot with ``source_pos`` of ``source``."""
        return self.position_of_slot(target, self.slots[source][source_pos])

    @property
    def width(self) -> int:
        return self.tokens.shape[1]

    def widened(self, width: int) -> "PreparedPrompts":
        """The same prompts right-padded to ``width`` columns (to share a batch with wider prompts;
        causal attention keeps the extra padding from changing any real position)."""
        extra = width - self.width
        if extra < 0:
            raise ValueError(f"cannot narrow prompts of width {self.width} to {width}")
        if extra == 0:
            return self
        pad = torch.full((self.batch, extra), gpt2_tokenizer().eot_token_id, dtype=self.tokens.dtype)
        return dataclasses.replace(self, tokens=torch.cat([self.tokens, pad], 1),
                                   mask=torch.cat([self.mask, torch.zeros_like(pad, dtype=self.mask.dtype)], 1))

    @staticmethod
    def concatenated(parts: "Sequence[PreparedPrompts]") -> "PreparedPrompts":
        """One batch holding the rows of ``parts`` (all of the same width) in order."""
        return PreparedPrompts(torch.cat([p.tokens for p in parts]), torch.cat([p.mask for p in parts]),
                               [n for p in parts for n in p.lengths], [t for p in parts for t in p.token_ids],
                               [s for p in parts for s in p.slots])


def prepare_prompts(prompts: Sequence[PromptSpec], n_ctx: int, alignment: Alignment = "end",
                    positions: list[list[int]] | None = None) -> PreparedPrompts:
    tok = gpt2_tokenizer()
    rows = []
    for i, p in enumerate(prompts):
        ids = tok.encode(p.text, prepend_bos=p.prepend_bos)
        if not ids:
            raise RequestError(f"prompt {i} has no tokens", field=f"prompts[{i}].text")
        if len(ids) > n_ctx:
            raise RequestError(f"prompt {i} has {len(ids)} tokens; the model's context is {n_ctx}",
                               field=f"prompts[{i}].text")
        rows.append(ids)
    tokens, mask = pad_token_rows(rows, pad_id=tok.eot_token_id)
    lengths = [len(r) for r in rows]
    if positions is not None:
        if len(positions) != len(rows):
            raise RequestError(f"positions has {len(positions)} lists for {len(rows)} prompts", field="positions")
        slots = []
        width = len(positions[0])
        for i, mapping in enumerate(positions):
            if len(mapping) != width:
                raise RequestError("every positions list must have the same length", field=f"positions[{i}]")
            s = [-1 - j for j in range(lengths[i])]  # unmapped positions get slots of their own
            for slot, pos in enumerate(mapping):
                if not 0 <= pos < lengths[i]:
                    raise RequestError(f"position {pos} is out of range for prompt {i} ({lengths[i]} tokens)",
                                       field=f"positions[{i}][{slot}]")
                s[pos] = slot
            slots.append(s)
    elif alignment == "end":
        slots = [[p - n for p in range(n)] for n in lengths]
    else:
        slots = [list(range(n)) for n in lengths]
    return PreparedPrompts(tokens, mask, lengths, rows, slots)


def single_token_ids(texts: Sequence[str], field: str) -> list[int]:
    """Token ids of texts that must each be exactly one token."""
    tok = gpt2_tokenizer()
    out = []
    for j, text in enumerate(texts):
        ids = tok.encode(text)
        if len(ids) != 1:
            shown = [tok.token_str(i) for i in ids]
            hint = " (did you mean it with a leading space?)" if ids and not text.startswith(" ") else ""
            raise RequestError(f"{text!r} is {len(ids)} tokens {shown}; a single token is required here{hint}",
                               field=f"{field}[{j}]")
        out.append(ids[0])
    return out


def check_loss(loss: LossSpec, n_prompts: int) -> None:
    if loss.kind == "logit_diff":
        if not loss.targets:
            raise RequestError("logit_diff needs at least one target token", field="loss.targets")
        if not loss.distractors:
            raise RequestError("logit_diff needs at least one distractor token", field="loss.distractors")
    elif loss.kind == "log_prob" and not loss.targets:
        raise RequestError("log_prob needs at least one target", field="loss.targets")
    if loss.kind == "kl" and loss.reference_prompt >= n_prompts:
        raise RequestError(f"reference_prompt {loss.reference_prompt} does not exist ({n_prompts} prompts)",
                           field="loss.reference_prompt")


def tokenize(request: TokenizeRequest) -> TokenizeResult:
    tok = gpt2_tokenizer()
    ids = tok.encode(request.text, prepend_bos=request.prepend_bos)
    return TokenizeResult(ids=ids, tokens=tok.token_strs(ids))


def detokenize(request: DetokenizeRequest) -> DetokenizeResult:
    tok = gpt2_tokenizer()
    for j, i in enumerate(request.ids):
        if not 0 <= i < tok.vocab_size:
            raise RequestError(f"token id {i} is outside the vocabulary [0, {tok.vocab_size})", field=f"ids[{j}]")
    return DetokenizeResult(text=tok.decode(request.ids), tokens=tok.token_strs(request.ids))
