"""Credentials never travel inside a URI. ``s3://KEY:SECRET@bucket/x``, a presigned
``?X-Amz-Signature=...`` or an endpoint ``http://KEY:SECRET@host`` end up quoted in error
messages, logs and MLflow params by code we do not own (pyarrow quotes a URI without its scheme),
so every entry point refuses them up front: the CLI's arguments, a config's values, the S3 endpoint.
The refusal is one line that names where credentials belong and never echoes them.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Tuple

WHERE_THEY_GO = (
    "give S3 credentials through the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
    "AWS_SESSION_TOKEN or AWS_PROFILE) or an instance role, and MLflow's through "
    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"
)

# scheme://userinfo@: a user alone before the first "/" (s3://TOKEN@bucket), or KEY:SECRET where
# the secret may hold "/" (AWS secrets do) but the key holds none (so a key name with an "@"
# further down the path, s3://bucket/me:x@home.jpg, is no userinfo).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?:[^\s/@?#]+@|[^\s/:@?#]+:[^\s@]*@)")
# Query parameters that carry a secret: access/secret keys, tokens, passwords, signatures.
_SECRET_NAME = (
    r"""(?:[^=&\s'"]*(?:secret|token|password|passwd|signature|credential)[^=&\s'"]*|(?:[^=&\s'"]*[_.-])?(?:key|sig))"""
)
_SECRET_PARAM = re.compile(rf"[?&]{_SECRET_NAME}=", re.IGNORECASE)


# What survives of them once a URI lost its scheme in someone's error message: a bare
# KEY:SECRET@host (removed) and secret query values (blanked).
_BARE_USERINFO = re.compile(r"""(?<![^\s'"(=,])[^\s'"/:@]+:[^\s'"@]+@""")
_SECRET_VALUE = re.compile(rf"""([?&]{_SECRET_NAME}=)[^&\s'"#]+""", re.IGNORECASE)


def scrub(text: str) -> str:
    """``text`` without a bare ``KEY:SECRET@`` or the value of a secret query parameter (for
    messages that quote a URI without its scheme; ``storage.redact`` handles whole URIs)."""
    return _SECRET_VALUE.sub(r"\1***", _BARE_USERINFO.sub("", text))


class CredentialsInUri(ValueError):
    """A value with credentials in it; the message names the setting, not the credentials."""


def has_credentials(value: str) -> bool:
    """True when a URI in ``value`` carries a user:password or a secret query parameter."""
    return "://" in value and bool(_USERINFO.search(value) or _SECRET_PARAM.search(value))


def refuse(name: str, value: Any) -> None:
    """CredentialsInUri when the setting ``name`` (a flag, a config key) holds credentials."""
    if isinstance(value, str) and has_credentials(value):
        shown = re.sub(r"\?\S*", "", _USERINFO.sub(r"\g<scheme>", value))  # no userinfo, no query
        raise CredentialsInUri(
            f"{name} {shown}: credentials inside a URI are refused (they would reach "
            f"logs and error messages); {WHERE_THEY_GO}"
        )


def refuse_all(items: Iterable[Tuple[str, Any]]) -> None:
    """``refuse`` for each (name, value); list values (repeated flags) item by item."""
    for name, value in items:
        for v in value if isinstance(value, (list, tuple)) else [value]:
            refuse(name, v)


def refuse_in_args(args) -> None:
    """Every string argument of a parsed command line, named as its flag."""
    refuse_all((f"--{k.replace('_', '-')}", v) for k, v in vars(args).items())
