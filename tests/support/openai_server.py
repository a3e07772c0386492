"""A small OpenAI-compatible chat-completions server on 127.0.0.1 for tests, answering canned but
format-correct replies: an explanation for explainer prompts, and for simulator prompts a JSON list
with one 0-10 list per sequence of the right length (10 on tokens that the explanation quotes or
names, else 0). It records every request and can fail on purpose (status codes to answer first,
a required API key).

    with OpenAIServer(api_key="k", fail_first=[429, 500]) as server:
        ChatClient(server.base_url, "canned", api_key="k").chat(...)
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXPLANATION = 'the token " 17" and other years'


class OpenAIServer:
    def __init__(self, *, api_key: str | None = "test-key", fail_first: list[int] | None = None,
                 explanation: str = EXPLANATION):
        self.api_key, self.explanation = api_key, explanation
        self.fail_queue = list(fail_first or [])
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def _answer(self, body: dict) -> str:
        system = body["messages"][0]["content"]
        user = body["messages"][-1]["content"]
        if "JSON list" not in system:
            return f"{self.explanation}."
        explanation = user.split("\n", 1)[0]
        quoted = set(json.loads(q) for q in re.findall(r'"(?:[^"\\]|\\.)*"', explanation))
        if "marked" in system:  # fuzzing: 1 where a marked token is one the explanation quotes
            texts = [json.loads(m) for m in re.findall(r"^Text \d+: (.*)$", user, flags=re.M)]
            return json.dumps([int(any(t in quoted for t in re.findall(r"<<(.*?)>>", x))) for x in texts])
        rows = []
        for line in user.splitlines():
            m = re.match(r"Sequence \d+: (.*)$", line)
            if m:
                rows.append([10 if t in quoted else 0 for t in json.loads(m.group(1))])
        return json.dumps(rows)

    def handle(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict]:
        length = int(handler.headers.get("Content-Length", "0"))
        raw = handler.rfile.read(length)
        with self._lock:
            self.headers.append(dict(handler.headers))
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                return 400, {"error": {"message": "body is not JSON"}}
            self.requests.append(body)
            if handler.path != "/v1/chat/completions":
                return 404, {"error": {"message": f"no route {handler.path}"}}
            if self.api_key is not None and handler.headers.get("Authorization") != f"Bearer {self.api_key}":
                return 401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
            if self.fail_queue:
                status = self.fail_queue.pop(0)
                return status, {"error": {"message": f"canned failure {status}"}}
        content = self._answer(body)
        return 200, {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body.get("model"),
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    def __enter__(self) -> "OpenAIServer":
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                status, payload = outer.handle(self)
                with outer._lock:
                    outer.statuses.append(status)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def completions(self) -> int:
        """Requests answered 200."""
        return sum(1 for s in self.statuses if s == 200)
