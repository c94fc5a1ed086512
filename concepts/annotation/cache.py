"""A persistent on-disk cache of LLM replies (SQLite, one row per request, committed at once).

The key is a hash of (backend, model, messages, generation parameters) and, when the backend
talks to a server named by a base URL, that server: two servers with the same model name never
share replies, while keys for the official OpenAI API (no base URL) are those of earlier
versions. The API key is not part of it and nothing secret is stored. A run that is killed
keeps every reply it received; a re-run sends none of those requests again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CachedReply:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


def server_id(base_url: str | None) -> str | None:
    """The server as it enters the key: the base URL without surrounding spaces or trailing
    '/' (None, or empty, for the backend's default server)."""
    return (base_url or "").strip().rstrip("/") or None


def cache_key(backend: str, model: str, messages: list[dict], params: dict, server: str | None = None) -> str:
    """The SHA-256 of the request's JSON; `server` (a base URL) joins it only when set, so keys
    without one are unchanged."""
    fields = {"backend": backend, "model": model, "messages": messages, "params": params}
    server = server_id(server)
    if server is not None:
        fields["server"] = server
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class ReplyCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, backend TEXT, model TEXT, "
            "text TEXT, finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, "
            "created REAL)")
        self.db.commit()

    def get(self, key: str) -> CachedReply | None:
        row = self.db.execute(
            "SELECT text, finish_reason, prompt_tokens, completion_tokens FROM replies WHERE key = ?", (key,)).fetchone()
        return CachedReply(*row) if row else None

    def put(self, key: str, backend: str, model: str, reply: CachedReply) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO replies (key, backend, model, text, finish_reason, prompt_tokens, completion_tokens, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, backend, model, reply.text, reply.finish_reason, reply.prompt_tokens, reply.completion_tokens, time.time()))
        self.db.commit()

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        self.db.close()
