"""LLM errors: what a backend raises, and whether retrying can help.

    LLMError (EvolagentsError)
    ├── RetryableLLMError          the retry layer tries again (with back-off)
    │   ├── RateLimitedError       429: slow down; `retry_after_s` when the server said
    │   ├── OverloadedError        503/529 or 5xx: the server is struggling
    │   ├── LLMTimeoutError        no answer before the call's deadline
    │   ├── UnavailableError       connection refused/reset, DNS, endpoint down
    │   └── MalformedResponseError the body was not the JSON we expect
    └── FatalLLMError              retrying cannot help: fix the request or the config
        ├── BadRequestError        400/422: our request is wrong
        ├── AuthenticationError    401/403: key missing or wrong (names the env var, never the key)
        ├── ContextTooLongError    prompt + max_tokens exceed the model's window
        └── BackendNotAvailableError  an optional dependency (vllm, xllamacpp, torch) is missing
"""

from __future__ import annotations

from bus.errors import EvolagentsError

__all__ = [
    "AuthenticationError",
    "BackendNotAvailableError",
    "BadRequestError",
    "ContextTooLongError",
    "FatalLLMError",
    "LLMError",
    "LLMTimeoutError",
    "MalformedResponseError",
    "OverloadedError",
    "RateLimitedError",
    "RetryableLLMError",
    "UnavailableError",
]


class LLMError(EvolagentsError):
    """An LLM call failed. `kind` is a short stable label used in usage counters and stores."""

    kind = "llm_error"


class RetryableLLMError(LLMError):
    """A failure that may go away if the same call is tried again later."""

    kind = "retryable"


class RateLimitedError(RetryableLLMError):
    """The server said 429. `retry_after_s` is the server's Retry-After, if it sent one."""

    kind = "rate_limited"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class OverloadedError(RetryableLLMError):
    """The server answered 5xx/503/529: it is overloaded or failing."""

    kind = "overloaded"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class LLMTimeoutError(RetryableLLMError):
    """The call passed its deadline."""

    kind = "timeout"


class UnavailableError(RetryableLLMError):
    """The endpoint could not be reached."""

    kind = "unavailable"


class MalformedResponseError(RetryableLLMError):
    """The server's body could not be parsed as the expected response."""

    kind = "malformed"


class FatalLLMError(LLMError):
    """Retrying cannot help."""

    kind = "fatal"


class BadRequestError(FatalLLMError):
    """The server rejected the request as invalid."""

    kind = "bad_request"


class AuthenticationError(FatalLLMError):
    """The server rejected our credentials."""

    kind = "auth"


class ContextTooLongError(FatalLLMError):
    """Prompt plus max_tokens exceed the model's context window."""

    kind = "context_too_long"


class BackendNotAvailableError(FatalLLMError):
    """The backend's optional dependency is not installed (the message says which extra)."""

    kind = "backend_not_available"
