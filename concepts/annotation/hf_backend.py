"""The `hf_local` backend: a local Hugging Face causal LM (greedy decoding, one request at a
time in a worker thread), for annotation without any server."""

from __future__ import annotations

import asyncio
import threading

from concepts.annotation.cache import CachedReply
from concepts.annotation.client import PermanentError


class HFLocalChat:
    name = "hf_local"

    def __init__(self, model: str, max_tokens: int = 64, device: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from concepts.extraction.models import resolve_model_path

        path = resolve_model_path(model)
        self.model = model
        self.params = {"max_tokens": max_tokens, "decoding": "greedy"}
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.lm = AutoModelForCausalLM.from_pretrained(path).to(self.device).eval()
        self._lock = threading.Lock()

    def _prompt(self, messages: list[dict]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:"

    def _generate(self, messages: list[dict]) -> CachedReply:
        import torch

        with self._lock, torch.inference_mode():
            enc = self.tokenizer(self._prompt(messages), return_tensors="pt").to(self.device)
            limit = getattr(self.lm.config, "max_position_embeddings", None) or getattr(self.lm.config, "n_positions", None)
            if limit and enc["input_ids"].shape[1] + self.params["max_tokens"] > limit:
                raise PermanentError(f"prompt of {enc['input_ids'].shape[1]} tokens + {self.params['max_tokens']} new "
                                     f"exceeds the model's {limit} positions; lower prompt.max_words")
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
            out = self.lm.generate(**enc, max_new_tokens=self.params["max_tokens"], do_sample=False, pad_token_id=pad)
            new = out[0, enc["input_ids"].shape[1]:]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            finish = "length" if len(new) >= self.params["max_tokens"] else "stop"
            return CachedReply(text, finish, int(enc["input_ids"].shape[1]), int(len(new)))

    async def complete(self, messages: list[dict], json_mode: bool = False) -> CachedReply:  # no JSON mode here
        return await asyncio.to_thread(self._generate, messages)
