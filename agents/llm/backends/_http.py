"""What every HTTP transport shares: API keys from env vars, status codes and connection failures
→ typed errors, and the scrubbing of secrets (the key, an endpoint's credentials) from messages."""

from __future__ import annotations

import email.utils
import os
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agents.llm.config import BackendConfig
from agents.llm.errors import (
    AuthenticationError,
    BadRequestError,
    ContextTooLongError,
    LLMError,
    LLMTimeoutError,
    NotFoundError,
    OverloadedError,
    RateLimitedError,
    UnavailableError,
    UnreachableError,
)
from agents.llm.redact import redact_text, redact_url
from agents.llm.types import GenerationParams

__all__ = [
    "connection_error",
    "endpoint_url",
    "error_from_status",
    "openai_request_kwargs",
    "parse_retry_after",
    "resolve_api_key",
    "scrub",
]

_CONTEXT_MARKERS = (
    "context length",
    "context_length",
    "context window",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "input is too long",
    "reduce the length",
)


def resolve_api_key(config: BackendConfig, placeholder: str = "unused") -> str:
    """The key from the env var named by `api_key_env`, or `placeholder` when none is named.

    Raises `AuthenticationError` naming the variable (never a value) when it is unset or empty.
    """
    env = config.api_key_env
    if env is None:
        return placeholder
    value = os.environ.get(env, "")
    if not value:
        raise AuthenticationError(
            f"LLM backend {config.backend!r}: environment variable {env} (api_key_env) is not set"
        )
    return value


def scrub(text: str, config: BackendConfig) -> str:
    """`text` with the API key's value (if a server echoed it) and the credentials of any URL
    in it (userinfo, ``?api_key=``…) masked."""
    env = config.api_key_env
    secret = os.environ.get(env, "") if env else ""
    text = redact_text(text)
    return text.replace(secret, "***") if len(secret) >= 4 else text


def endpoint_url(base: str, path: str) -> str:
    """``base`` (an endpoint's base URL) with ``path`` appended to its path, its query string
    (a gateway's ``?api-version=``/``?key=``) kept after it."""
    parts = urlsplit(base)
    joined = parts.path.rstrip("/") + "/" + path.lstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, joined, parts.query, parts.fragment))


def connection_error(exc: BaseException, where: Callable[[str], str]) -> UnavailableError:
    """The typed error for a failed connection: `UnreachableError` when none could be made
    (refused, DNS, no route, TLS handshake), else `UnavailableError` (reset, dropped). Walks the
    ``__cause__``/``__context__`` chain, so an SDK's wrapped httpx/aiohttp error is seen too.
    ``where(what)`` is the transport's message prefixer (endpoint named, secrets scrubbed)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        name = type(seen).__name__
        if isinstance(seen, ConnectionRefusedError | socket.gaierror | ssl.SSLError) or name in (
            "ClientConnectorError", "ClientConnectorDNSError", "ClientConnectorSSLError",
            "ClientConnectorCertificateError", "ConnectError",
        ):  # fmt: skip
            return UnreachableError(where(f"cannot connect ({type(exc).__name__}: {exc})"))
        seen = seen.__cause__ or seen.__context__
    return UnavailableError(where(f"connection failed ({type(exc).__name__}: {exc})"))


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date); None if absent."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from_status(
    status: int,
    message: str,
    headers: Mapping[str, str] | None,
    *,
    config: BackendConfig,
    url: str,
) -> LLMError:
    """The typed error for an HTTP error status. `message` is the server's error text."""
    where = f"LLM backend {config.backend!r} at {redact_url(url)}"
    short = scrub(message, config).strip().replace("\n", " ")[:300]
    if status == 429:
        return RateLimitedError(f"{where}: rate limited (429): {short}", parse_retry_after(headers))
    if status in (401, 403):
        key = (
            f"the key in environment variable {config.api_key_env}"
            if config.api_key_env
            else "no API key (set api_key_env to the NAME of the variable holding it)"
        )
        return AuthenticationError(f"{where}: {status} not authorised with {key}: {short}")
    if status == 404:
        return NotFoundError(
            f"{where}: 404 not found — the model {config.model!r} or the endpoint URL's path does "
            f"not exist: {short}"
        )
    if status in (408, 504):
        return LLMTimeoutError(f"{where}: the server timed out ({status}): {short}")
    if status >= 500:
        retry_after = parse_retry_after(headers)
        return OverloadedError(
            f"{where}: server error {status}: {short}", retry_after, status=status
        )
    lowered = short.lower()
    if status in (400, 413, 422) and any(m in lowered for m in _CONTEXT_MARKERS):
        return ContextTooLongError(f"{where}: context too long ({status}): {short}")
    return BadRequestError(f"{where}: request rejected ({status}): {short}")


def sdk_error_message(message: str, body: object) -> str:
    """The server's own error text from an SDK status error's JSON ``body`` (``{"error":
    {"message": ...}}`` or ``{"message": ...}``), else the SDK's ``message``."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
    return message


def openai_request_kwargs(params: GenerationParams) -> dict[str, Any]:
    """The OpenAI chat-completions fields for `params` (unset fields are left out)."""
    kw: dict[str, Any] = {}
    if params.temperature is not None:
        kw["temperature"] = params.temperature
    if params.top_p is not None:
        kw["top_p"] = params.top_p
    if params.max_tokens is not None:
        kw["max_tokens"] = params.max_tokens
    if params.stop:
        kw["stop"] = list(params.stop)
    if params.seed is not None:
        kw["seed"] = params.seed
    if params.top_logprobs is not None:
        kw["logprobs"] = True
        kw["top_logprobs"] = params.top_logprobs
    return kw


def first_token_logprobs(choice: Any) -> dict[str, float]:
    """The first token's top alternatives from an OpenAI-style `choice` (token → log-prob);
    empty when the response carries none. Never raises."""
    try:
        first = choice["logprobs"]["content"][0]
        return {str(t["token"]): float(t["logprob"]) for t in first["top_logprobs"]}
    except (KeyError, IndexError, TypeError, ValueError):
        return {}
