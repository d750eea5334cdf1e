"""Prompt governance: the prompt library, its evaluation and its lifecycle (see docs/prompts.md)."""
