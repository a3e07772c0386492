"""A small client for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama,
OpenRouter, llama.cpp's server ...): bounded concurrency, retries with backoff, and a disk cache
keyed by the request (model, messages, sampling), so rerunning a job costs no calls.

    client = ChatClient(base_url="http://127.0.0.1:8001/v1", model="m", api_key="k", cache_dir=".cache")
    text = client.chat([{"role": "user", "content": "hi"}], max_tokens=20)

Errors: 401/403 -> :class:`LlmAuthError`; connection failures and 429/5xx after every retry ->
:class:`LlmUnavailableError`; anything else unusable -> :class:`LlmError`. Each names the endpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import httpx

from .records import LlmAuthError, LlmError, LlmUnavailableError

RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504}


class ChatClient:
    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, max_concurrency: int = 4,
                 max_retries: int = 4, backoff_s: float = 0.5, max_backoff_s: float = 20.0, timeout_s: float = 60.0,
                 cache_dir: str | os.PathLike[str] | None = None, transport: httpx.BaseTransport | None = None):
        self.base_url, self.model = base_url.rstrip("/"), model
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._slots = threading.BoundedSemaphore(max(1, max_concurrency))
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "cache_hits": 0}
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(headers=headers, timeout=timeout_s, transport=transport)

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def close(self) -> None:
        self._http.close()

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    # ---- cache -------------------------------------------------------------------------------------
    def cache_key(self, body: dict) -> str:
        return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.json"

    def _cached(self, key: str) -> str | None:
        path = self._cache_path(key)
        if path is None or not path.exists():
            return None
        try:
            return json.loads(path.read_text())["content"]
        except (OSError, ValueError, KeyError):
            return None  # a damaged entry is asked again (and rewritten)

    def _store(self, key: str, content: str) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"content": content}))
        os.replace(tmp, path)

    # ---- the call ----------------------------------------------------------------------------------
    def chat(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
        """The assistant's reply to ``messages`` (from the cache when this exact request was answered)."""
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        key = self.cache_key(body)
        hit = self._cached(key)
        if hit is not None:
            self._count("cache_hits")
            return hit
        with self._slots:
            content = self._post(body)
        self._store(key, content)
        return content

    def _post(self, body: dict) -> str:
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._count("retries")
            self._count("requests")
            try:
                response = self._http.post(self.url, json=body)
            except httpx.HTTPError as error:
                last = f"{type(error).__name__}: {error}"
                self._sleep(attempt, None)
                continue
            if response.status_code in (401, 403):
                raise LlmAuthError(f"the LLM endpoint {self.url} refused the API key (HTTP {response.status_code}: "
                                   f"{response.text[:200]}); set MECHSCOPE_LLM_API_KEY")
            if response.status_code in RETRY_STATUSES:
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                self._sleep(attempt, response.headers.get("Retry-After"))
                continue
            if response.status_code != 200:
                raise LlmError(f"the LLM endpoint {self.url} answered HTTP {response.status_code}: "
                               f"{response.text[:300]}")
            return self._content(response)
        raise LlmUnavailableError(f"the LLM endpoint {self.url} failed {self.max_retries + 1} times; last: {last}")

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        if attempt >= self.max_retries:
            return
        delay = self.backoff_s * 2 ** attempt
        if retry_after:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass
        time.sleep(min(delay, self.max_backoff_s))

    def _content(self, response: httpx.Response) -> str:
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LlmError(f"the LLM endpoint {self.url} answered something that is not a chat completion: "
                           f"{response.text[:300]}") from None
        if not isinstance(content, str):
            raise LlmError(f"the LLM endpoint {self.url} answered a non-text message: {content!r}"[:400])
        return content
