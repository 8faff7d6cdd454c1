"""Evol-Instruct building blocks: operation packs, prompt templates and output parsing.

Pure and agent-independent: the EvolAgent (and the eliminator and Auto Evol-Instruct pieces)
call these; nothing here talks to the bus or an LLM.
"""

from agents.evol.operations import Operation, OperationKind, OperationPack, Profile
from agents.evol.parsing import extract_evolved_instruction
from agents.evol.templates import PromptError, Template, load_template

__all__ = [
    "Operation",
    "OperationKind",
    "OperationPack",
    "Profile",
    "PromptError",
    "Template",
    "extract_evolved_instruction",
    "load_template",
]
