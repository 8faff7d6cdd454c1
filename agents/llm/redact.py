"""Secrets out of everything we write: endpoint URLs with credentials, pasted keys.

An endpoint URL may carry a credential — userinfo (``https://user:pass@host/v1``) or a query
parameter (``?api_key=…``, ``key=``, ``token=``, ``access_token=``, ``sig=``…). The transports
need the real URL; everything that is *written* (config.resolved.json, run.log, run.sqlite,
error messages, statistics) gets `redact_url` / `redact_text`, which replace the secret with
``***`` and keep the rest (scheme, host, port, path, other parameters) so the endpoint can still
be recognised. `looks_like_secret` spots a pasted API key (used to refuse one where a variable
*name* or an option belongs, without echoing it).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

__all__ = ["MASK", "looks_like_secret", "redact_text", "redact_url", "secret_key_name"]

MASK = "***"

#: Query parameters whose value is a credential (compared lower-case, `-` read as `_`).
_SECRET_PARAMS = frozenset({
    "api_key", "apikey", "key", "token", "access_token", "auth", "auth_token", "secret",
    "password", "pass", "sig", "signature", "client_secret", "x_api_key",
})  # fmt: skip
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")
#: Prefixes of common provider keys (OpenAI, Anthropic, Groq, Hugging Face, xAI, AWS, GitHub…).
_KEY_PREFIX = re.compile(
    r"^(sk-|sk_|sk-ant-|gsk_|hf_|xai-|AKIA|ghp_|gho_|github_pat_|glpat-|pk-|rk_|AIza)"
)
_SECRET_NAME = re.compile(
    r"(^|_)(api_?key|key|token|secret|password|passwd|credential|bearer|authorization)$",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """``url`` with its userinfo password (or lone user token) and secret query values masked.

    Anything that does not parse as a URL is returned unchanged.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if sep else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_is_secret_param(k) for k, _ in pairs):
            query = "&".join(
                f"{quote(k, safe='')}={MASK if _is_secret_param(k) else quote(v, safe='')}"
                for k, v in pairs
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through `redact_url` (cheap when there is none)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def looks_like_secret(value: str) -> bool:
    """True for a string that looks like an API key or token rather than a name or a setting:
    a known key prefix, a ``Bearer`` value, or 32+ characters of mixed-case letters and digits
    with nothing but ``_`` and ``-`` between them (paths, model names and variable names fail)."""
    text = value.strip()
    if text.lower().startswith("bearer "):
        return True
    if _KEY_PREFIX.match(text) and len(text) >= 16:
        return True
    if len(text) < 32 or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        return False
    return all(re.search(cls, text) for cls in ("[a-z]", "[A-Z]", "[0-9]"))


def secret_key_name(name: str) -> bool:
    """True for an option name that says it holds a credential (``api_key``, ``hf_token``…)."""
    return bool(_SECRET_NAME.search(name.replace("-", "_")))


def _is_secret_param(name: str) -> bool:
    return name.lower().replace("-", "_") in _SECRET_PARAMS
