"""LLM errors: what a backend raises, and whether retrying can help.

    LLMError (EvolagentsError)
    ├── RetryableLLMError          the retry layer tries again (with back-off)
    │   ├── RateLimitedError       429: slow down; `retry_after_s` when the server said
    │   ├── OverloadedError        5xx (`status`); 503/529 say "overloaded", 500/502 a failure
    │   ├── LLMTimeoutError        no answer before the call's deadline
    │   ├── UnavailableError       connection reset/dropped, endpoint went away mid-call
    │   │   └── UnreachableError   no connection at all: refused, DNS failure, no route  [B]
    │   └── MalformedResponseError the body was not the JSON we expect
    └── FatalLLMError              retrying cannot help: fix the request or the config
        ├── BadRequestError        400/422: our request is wrong
        ├── AuthenticationError    401/403: key missing or wrong (names the env var)      [B]
        ├── NotFoundError          404: the model or the URL path does not exist          [B]
        ├── ContextTooLongError    prompt + max_tokens exceed the model's window
        ├── BackendNotAvailableError  an optional dependency (vllm, xllamacpp, torch) is missing
        └── CircuitOpenError       the backend's circuit breaker stopped calling it       [B]

[B] `backend_fault = True`: the backend, not the request, is at fault. The managed client's
circuit breaker counts consecutive attempts failing this way (CircuitOpenError aside), and a
pipeline leaves a row that failed so unfinished — `resume` retries it once the backend is fixed —
instead of marking it failed. Messages never contain an API key or an endpoint's credentials.
"""

from __future__ import annotations

from bus.errors import EvolagentsError

__all__ = [
    "AuthenticationError",
    "BackendNotAvailableError",
    "BadRequestError",
    "CircuitOpenError",
    "ContextTooLongError",
    "FatalLLMError",
    "LLMError",
    "LLMTimeoutError",
    "MalformedResponseError",
    "NotFoundError",
    "OverloadedError",
    "RateLimitedError",
    "RetryableLLMError",
    "UnavailableError",
    "UnreachableError",
]


class LLMError(EvolagentsError):
    """An LLM call failed. `kind` is a short stable label used in usage counters and stores."""

    kind = "llm_error"
    #: True when the backend (unreachable, credentials, model, circuit open) is at fault.
    backend_fault = False


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
    """The server answered 5xx. `status` is the HTTP status when there was one: 503 and 529
    (or no status: an in-process backend saying so) mean "overloaded, slow down"; 500, 502 and
    other 5xx a failure that says nothing about load (see `signals_overload`)."""

    kind = "overloaded"

    def __init__(
        self, message: str, retry_after_s: float | None = None, *, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.status = status

    @property
    def signals_overload(self) -> bool:
        return self.status in (None, 503, 529)


class LLMTimeoutError(RetryableLLMError):
    """The call passed its deadline."""

    kind = "timeout"


class UnavailableError(RetryableLLMError):
    """The connection to the endpoint failed or dropped (reset, closed mid-answer)."""

    kind = "unavailable"


class UnreachableError(UnavailableError):
    """No connection could be made at all: refused, DNS failure, no route to the host."""

    kind = "unreachable"
    backend_fault = True


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
    backend_fault = True


class NotFoundError(FatalLLMError):
    """404: the server does not know the model, or the endpoint URL's path is wrong."""

    kind = "not_found"
    backend_fault = True


class ContextTooLongError(FatalLLMError):
    """Prompt plus max_tokens exceed the model's context window."""

    kind = "context_too_long"


class BackendNotAvailableError(FatalLLMError):
    """The backend's optional dependency is not installed (the message says which extra)."""

    kind = "backend_not_available"


class CircuitOpenError(FatalLLMError):
    """The backend's circuit breaker opened: after `breaker_after` consecutive attempts failing
    with a backend fault, the client stops calling it and the run stops (resumable). The message
    names the backend, the endpoint (credentials masked) and the last error."""

    kind = "circuit_open"
    backend_fault = True
