"""`python -m agents.llm.mock`: run the mock LLM server (see `agents.llm.mock.cli`)."""

import sys

from agents.llm.mock.cli import main

sys.exit(main())
