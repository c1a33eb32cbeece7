"""Credentials never appear in what slam prints, logs, tracks or writes.

    redact("http://alice:s3cret@mlflow:5000/x?token=abc")  # -> "http://alice:***@mlflow:5000/x?token=***"
    carries_credentials("http://alice:s3cret@mlflow:5000")  # -> "a user:password@ part" (None when clean)
    install_log_filter()                                     # every record through the root handlers is redacted

What counts as a credential: the password part of a URL (`scheme://user:PASSWORD@host`), the value of a
`key=value` / `key: value` whose key names a secret (…password, …secret, …token, …access_key, …api_key,
…signature, …credential), a `Bearer` token, an AWS access key id, and the current value of every secret
environment variable (AWS_SECRET_ACCESS_KEY, MLFLOW_TRACKING_PASSWORD, RAY_AUTH_TOKEN, …) wherever it
appears. Used by the CLI's error line, the log handlers, MLflow params/tags and the config files slam writes.
"""

from __future__ import annotations

import logging
import os
import re

MASK = "***"
_SECRET_WORDS = r"(?:password|passwd|pwd|secret|token|access[_-]?key|secret[_-]?key|api[_-]?key|apikey|signature|credentials?|auth)"
_URL_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+):(?P<pw>[^\s@/]+)@")
# a key that ENDS in a secret word (so TOKENIZERS_PARALLELISM and max_new_tokens stay readable)
_KEY_VALUE = re.compile(r"(?i)(?P<key>\b[\w.-]*" + _SECRET_WORDS + r")(?P<sep>\s*[=:]\s*|['\"]\s*:\s*)(?P<q>['\"]?)"
                        r"(?P<value>[^\s'\",;&}]+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
SECRET_ENV = re.compile(r"(?i)(PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY|CREDENTIAL)S?$")


def _secret_env_values() -> list[str]:
    """Current values of secret-named env vars (long enough not to mask ordinary words), longest first."""
    vals = {v for k, v in os.environ.items() if SECRET_ENV.search(k) and len(v) >= 8}
    return sorted(vals, key=len, reverse=True)


def redact(text: object) -> str:
    """`text` with every credential replaced by ***."""
    s = str(text)
    for v in _secret_env_values():
        if v in s:
            s = s.replace(v, MASK)
    s = _URL_USERINFO.sub(lambda m: f"{m.group('head')}:{MASK}@", s)
    s = _KEY_VALUE.sub(lambda m: m.group("key") + m.group("sep") + m.group("q") +
                       (m.group("value") if m.group("value") == MASK else MASK), s)
    s = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", s)
    return _AWS_KEY_ID.sub(lambda m: m.group(1) + "*" * 16, s)


def strip_userinfo(uri: str) -> str:
    """A URI without its `user:password@` part (for specs and files: the password travels by Secret)."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@", r"\1", uri)


def carries_credentials(value: str) -> str | None:
    """Why `value` must not be written into a spec, a pipeline parameter or a file; None when it is clean."""
    s = str(value)
    if _URL_USERINFO.search(s):
        return "a user:password@ part"
    if _AWS_KEY_ID.search(s):
        return "an AWS access key id"
    if _BEARER.search(s):
        return "a bearer/basic token"
    if _KEY_VALUE.search(s):
        return "a key=value credential"
    if any(v in s for v in _secret_env_values()):
        return "the value of a secret environment variable"
    return None


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with `redact` (arguments merged first, so they are covered too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Add the redacting filter to every handler of `logger` (default: root) once."""
    for h in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(RedactingFilter())
