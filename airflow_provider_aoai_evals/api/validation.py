"""Input checks that run before any request, so bad input fails with the parameter's name and sends nothing."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_aoai_evals.api.errors import EvalsConfigError

# Ids from the service look like `eval_67ab...`, `evalrun_...`, `outputitem_...`, `file-...`. Anything that
# could change the meaning of a URL path (separators, traversal, query or fragment markers, whitespace,
# percent-escapes) is refused rather than escaped, because an escaped `/` or `..` is still a wrong id.
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,255}")

METADATA_MAX_KEYS = 16
METADATA_MAX_KEY_LENGTH = 64
METADATA_MAX_VALUE_LENGTH = 512

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def validate_id(parameter: str, value: Any) -> str:
    """Return ``value`` if it is safe to put in a URL path as an id, else raise naming ``parameter``."""
    if not isinstance(value, str):
        raise EvalsConfigError(parameter, f"must be a string id, got {type(value).__name__}")
    if not value:
        raise EvalsConfigError(parameter, "must not be empty")
    if ".." in value or not _ID_PATTERN.fullmatch(value):
        raise EvalsConfigError(
            parameter,
            f"{value!r} is not a valid id: ids hold letters, digits, '_', '-', '.', ':' only "
            "(no '/', '..', '?', '#', '%' or whitespace)",
        )
    return value


def validate_metadata(parameter: str, metadata: Any) -> dict[str, str]:
    """Check a metadata map against the API's limits (16 keys, 64-char keys, 512-char string values)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise EvalsConfigError(parameter, f"must be a dict of strings, got {type(metadata).__name__}")
    if len(metadata) > METADATA_MAX_KEYS:
        raise EvalsConfigError(parameter, f"has {len(metadata)} keys; the API allows {METADATA_MAX_KEYS}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or len(key) > METADATA_MAX_KEY_LENGTH:
            raise EvalsConfigError(
                parameter, f"key {key!r} must be a string of 1-{METADATA_MAX_KEY_LENGTH} chars"
            )
        if not isinstance(value, str) or len(value) > METADATA_MAX_VALUE_LENGTH:
            raise EvalsConfigError(
                parameter, f"value of {key!r} must be a string of at most {METADATA_MAX_VALUE_LENGTH} chars"
            )
    return dict(metadata)


def is_loopback_host(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: the only hosts we talk to over plain http."""
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_base_url(parameter: str, url: str) -> str:
    """An absolute https URL, or http to a loopback host (a local test server); no query or fragment."""
    if not url or not isinstance(url, str):
        raise EvalsConfigError(
            parameter, "is missing: set the connection's host to the API base URL or endpoint"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise EvalsConfigError(parameter, f"{url!r} is not an absolute http(s) URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise EvalsConfigError(
            parameter,
            f"{url!r} uses plain http to a non-loopback host; API keys must travel over https "
            "(http is allowed only for 127.0.0.1/localhost test servers)",
        )
    if parts.query or parts.fragment:
        raise EvalsConfigError(parameter, f"{url!r} must not contain a query string or fragment")
    if any(ch.isspace() for ch in url):
        raise EvalsConfigError(parameter, f"{url!r} must not contain whitespace")
    return url.rstrip("/")
