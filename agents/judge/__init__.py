"""Judging and data-quality building blocks, independent of any agent.

Prompt templates (`templates`), strict verdict parsers and position-swap aggregation (`verdicts`,
`aggregate`), GSM8K exact match (`gsm8k`), a sandboxed HumanEval pass@1 runner (`sandbox`,
`humaneval`), judge calls over any LLM client (`calls`) and dataset metrics (`metrics`).
Import the submodules directly.
"""
