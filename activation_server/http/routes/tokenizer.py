"""GPT-2's tokenizer: text to token ids and back (no model needed)."""

from __future__ import annotations

import anyio
from fastapi import APIRouter

from ...engine.prompts import detokenize as run_detokenize, tokenize as run_tokenize
from ...server_schemas import DetokenizeRequest, DetokenizeResult, TokenizeRequest, TokenizeResult

router = APIRouter(tags=["tokenizer"])


@router.post("/tokenize", response_model=TokenizeResult)
async def tokenize(request: TokenizeRequest) -> TokenizeResult:
    return await anyio.to_thread.run_sync(run_tokenize, request)


@router.post("/detokenize", response_model=DetokenizeResult)
async def detokenize(request: DetokenizeRequest) -> DetokenizeResult:
    return await anyio.to_thread.run_sync(run_detokenize, request)
