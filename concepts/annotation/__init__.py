"""Concept annotation with LLMs: prompts, the chat client, the cache, annotators, scoring."""
