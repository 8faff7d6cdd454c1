"""Transports: one module per backend, each imported lazily by `agents.llm.factory`."""
