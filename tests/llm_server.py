"""A local OpenAI-compatible Chat Completions server for tests and benchmarks (127.0.0.1 only).

`LLMServer(responder)` starts a threaded HTTP server on a free port of 127.0.0.1. For every
POST to `.../chat/completions` it calls `responder(request_json, n)` (n counts requests from 0)
which returns one of:
    Reply(text, finish_reason="stop")       a normal completion
    Status(code, headers, body)             an HTTP error (429 with Retry-After, 500, ...)
    Hang(seconds)                           sleep, then answer with a 200 reply of ""
    Malformed()                             a 200 whose body is not JSON
    Drop()                                  close the connection without answering
    Html(body)                              a 200 with content-type text/html (a proxy's login page)
    Silent()                                accept the request and never answer (until the server stops)
The server counts requests in flight (and their maximum), keeps every request body and the
Authorization headers it saw, and can add a fixed latency to every request.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    text: str
    finish_reason: str = "stop"


@dataclass
class Status:
    code: int
    headers: dict = field(default_factory=dict)
    body: str = '{"error": {"message": "server says no", "type": "server_error"}}'


@dataclass
class Hang:
    seconds: float


@dataclass
class Malformed:
    pass


@dataclass
class Drop:
    """Close the connection without an answer (a server that went away mid-request)."""


@dataclass
class Html:
    """HTTP 200 with an HTML page (content-type text/html), as a captive proxy sends."""
    body: str = "<html><head><title>Sign in</title></head><body><form>Proxy login</form></body></html>"


@dataclass
class Silent:
    """Read the request and never answer: the connection stays open until the server stops."""


def user_text(request: dict) -> str:
    return "\n".join(m["content"] for m in request["messages"] if m["role"] == "user")


class LLMServer:
    def __init__(self, responder, latency: float = 0.0):
        self.responder = responder
        self.latency = latency
        self.requests: list[dict] = []
        self.auth: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # releases Silent handlers
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: bytes, headers: dict | None = None,
                      content_type: str = "application/json"):
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.rstrip("/").endswith("chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                with server._lock:
                    n = len(server.requests)
                    server.requests.append(request)
                    server.auth.append(self.headers.get("Authorization", ""))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if server.latency:
                        time.sleep(server.latency)
                    action = server.responder(request, n)
                    if isinstance(action, Drop):
                        self.close_connection = True
                        return
                    if isinstance(action, Silent):
                        server._stopping.wait()
                        self.close_connection = True
                        return
                    if isinstance(action, Html):
                        self._send(200, action.body.encode(), content_type="text/html; charset=utf-8")
                        return
                    if isinstance(action, Hang):
                        time.sleep(action.seconds)
                        action = Reply("")
                    if isinstance(action, Status):
                        self._send(action.code, action.body.encode(), action.headers)
                    elif isinstance(action, Malformed):
                        self._send(200, b'{"id": "x", "choices": [{"message": ')
                    else:
                        prompt_tokens = len(json.dumps(request["messages"])) // 4
                        completion_tokens = max(1, len(action.text) // 4)
                        body = {
                            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
                            "model": request.get("model", "test"),
                            "choices": [{"index": 0, "finish_reason": action.finish_reason,
                                         "message": {"role": "assistant", "content": action.text}}],
                            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                      "total_tokens": prompt_tokens + completion_tokens},
                        }
                        self._send(200, json.dumps(body).encode())
                finally:
                    with server._lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> LLMServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def go_away(self) -> None:
        """Stop listening (from any thread, a handler's included): later connections are refused."""
        def stop():
            self.httpd.shutdown()
            self.httpd.server_close()
        threading.Thread(target=stop, daemon=True).start()

    def prompts(self) -> list[str]:
        return [user_text(r) for r in self.requests]
