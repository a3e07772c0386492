"""Text generation with a KV cache: greedy, temperature and top-p sampling, batched with left
padding, with hooks and interventions active at every step."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from .errors import InvalidInputError
from .tokenizer import gpt2_tokenizer, pad_token_rows


@dataclasses.dataclass
class Generation:
    tokens: torch.Tensor           # [batch, prompt_width + new] left-padded prompts plus new tokens
    attention_mask: torch.Tensor   # same shape, 0 on padding
    new_tokens: list[list[int]]    # per row, the generated ids (up to and including an end-of-text)
    texts: list[str]               # per row, the generated text


def _next_token(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator | None) -> torch.Tensor:
    if temperature == 0.0:
        return logits.argmax(-1)
    probs = (logits / temperature).softmax(-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # smallest set whose mass reaches top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)


@torch.no_grad()
def generate(model, prompts: str | Sequence[str] | torch.Tensor, *, max_new_tokens: int = 20,
             temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
             attention_mask: torch.Tensor | None = None, stop_at_eot: bool = True,
             prepend_bos: bool = False, **forward_kwargs) -> Generation:
    """Continue ``prompts`` (text, a list of texts, or a left-padded ``[batch, pos]`` tensor with its
    ``attention_mask``). ``temperature=0`` is greedy. ``forward_kwargs`` (``interventions``,
    ``fwd_hooks``, ...) apply to every forward pass, prompt and generated tokens alike."""
    if max_new_tokens < 0:
        raise InvalidInputError(f"max_new_tokens must be >= 0, got {max_new_tokens}", field="max_new_tokens")
    if temperature < 0 or not 0 < top_p <= 1:
        raise InvalidInputError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}",
                                field="temperature" if temperature < 0 else "top_p")
    tok = gpt2_tokenizer()
    if isinstance(prompts, torch.Tensor):
        tokens = prompts
        mask = attention_mask if attention_mask is not None else torch.ones_like(tokens)
    else:
        tokens, mask = tok.to_tokens(prompts, prepend_bos=prepend_bos, padding_side="left")
    if tokens.shape[1] + max_new_tokens > model.cfg.n_ctx:
        raise InvalidInputError(f"prompt ({tokens.shape[1]} tokens) + max_new_tokens ({max_new_tokens}) exceeds "
                                f"the context of {model.cfg.n_ctx}", field="max_new_tokens")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    device = model.wte.weight.device
    tokens, mask = tokens.to(device), mask.to(device)
    done = torch.zeros(tokens.shape[0], dtype=torch.bool, device=device)
    new: list[torch.Tensor] = []
    step_input, past = tokens, None
    for _ in range(max_new_tokens):
        logits, past = model(step_input, mask, past_kv=past, return_kv=True, **forward_kwargs)
        nxt = _next_token(logits[:, -1].float().cpu(), temperature, top_p, gen).to(device)
        nxt = torch.where(done, torch.full_like(nxt, tok.eot_token_id), nxt)
        new.append(nxt)
        if stop_at_eot:
            done |= nxt == tok.eot_token_id
            if bool(done.all()):
                break
        step_input = nxt[:, None]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    new_ids = torch.stack(new, 1) if new else tokens[:, :0]
    rows: list[list[int]] = []
    for row in new_ids.tolist():
        if stop_at_eot and tok.eot_token_id in row:
            row = row[:row.index(tok.eot_token_id) + 1]
        rows.append(row)
    full = torch.cat([tokens, new_ids], 1)
    full_mask = torch.cat([mask[:, :tokens.shape[1]], torch.ones_like(new_ids)], 1)
    texts = [tok.decode([t for t in r if t != tok.eot_token_id]) for r in rows]
    return Generation(full, full_mask, rows, texts)


def pad_left(rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return pad_token_rows(rows, pad_id=gpt2_tokenizer().eot_token_id, padding_side="left")
