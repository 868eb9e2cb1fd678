"""Input of the toy Key Vault: names, versions, JSON bodies and paging, checked like Azure.

Every check raises :class:`~examples.lab.keyvault.store.VaultError` (400 ``BadParameter``
unless said otherwise), so bad input is answered with a clear 4xx, never a 500.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from starlette.requests import Request

from .._http import BodyTooLarge, ascii_int, read_body
from . import store
from .store import Attributes, VaultError

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_PAGE",
    "MAX_VALUE_BYTES",
    "SKIP_TOKEN",
    "attributes",
    "bad",
    "content_type",
    "json_body",
    "name",
    "optional_text",
    "page_size",
    "properties",
    "skip_token",
    "tags",
    "text",
    "version",
]

#: Key Vault's limit on a secret value (25 KiB).
MAX_VALUE_BYTES: Final = 25 * 1024
#: A 25 KiB value may grow sixfold when JSON escapes it; anything larger is refused unread.
MAX_BODY_BYTES: Final = 256 * 1024
MAX_PAGE: Final = 25
SKIP_TOKEN: Final = "$skiptoken"
_MAX_TAGS: Final = 15
_MAX_CONTENT_TYPE: Final = 255
_MAX_TIME: Final = 253_402_300_799  # 9999-12-31T23:59:59Z
_NAME: Final = re.compile(r"[0-9a-zA-Z-]{1,127}")
_VERSION: Final = re.compile(r"[0-9a-fA-F]{32}")


def bad(message: str) -> VaultError:
    """Key Vault's 400 ``BadParameter``."""
    return VaultError(400, "BadParameter", message)


def name(request: Request) -> str:
    """The secret name from the path: 1 to 127 letters, digits and dashes (else 400)."""
    name: str = request.path_params["name"]
    if not _NAME.fullmatch(name):
        raise bad(
            "The request URI contains an invalid name: secret names are 1 to 127 letters, "
            "digits and dashes."
        )
    return name


def version(request: Request) -> str | None:
    """The version from the path (None for the latest); a malformed one is a 404, as in Azure."""
    version: str = request.path_params.get("version", "")
    if not version:
        return None
    if not _VERSION.fullmatch(version):
        raise store.not_found(name(request), "(invalid version)")
    return version


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


async def json_body(request: Request) -> dict[str, Any]:
    """The JSON object body: 413 past :data:`MAX_BODY_BYTES`, 400 when it is not an object."""
    try:
        raw = await read_body(request, MAX_BODY_BYTES)
    except BodyTooLarge as exc:
        raise VaultError(413, "RequestBodyTooLarge", str(exc)) from None
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise bad("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise bad("The request body must be a JSON object.")
    return data


def text(value: object, field: str, max_bytes: int) -> str:
    """A string of at most ``max_bytes`` UTF-8 bytes (lone surrogates refused)."""
    if not isinstance(value, str):
        raise bad(f"{field} must be a string.")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
        raise bad(f"{field} is not valid Unicode text.") from None
    if size > max_bytes:
        raise bad(f"{field} is too large: the limit is {max_bytes} bytes.")
    return value


def optional_text(value: object, field: str, max_bytes: int) -> str | None:
    """:func:`text`, or None."""
    return None if value is None else text(value, field, max_bytes)


def content_type(value: object) -> str | None:
    """``contentType``: free text up to 255 bytes, or None."""
    return optional_text(value, "contentType", _MAX_CONTENT_TYPE)


def tags(value: object) -> dict[str, str] | None:
    """Tags: at most 15 string pairs (names up to 512 bytes, values up to 256)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad("tags must be an object of strings.")
    if len(value) > _MAX_TAGS:
        raise bad(f"At most {_MAX_TAGS} tags are allowed.")
    return {text(k, "A tag name", 512): text(v, "A tag value", 256) for k, v in value.items()}


def _time(value: object, field: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= _MAX_TIME:
        raise bad(f"attributes.{field} must be a Unix time in seconds.")
    return value


def attributes(value: object) -> Attributes:
    """``attributes``: ``enabled`` (bool), ``nbf`` and ``exp`` (Unix seconds)."""
    if value is None:
        return Attributes()
    if not isinstance(value, dict):
        raise bad("attributes must be an object.")
    enabled = value.get("enabled")
    if enabled is not None and type(enabled) is not bool:
        raise bad("attributes.enabled must be true or false.")
    nbf, exp = _time(value.get("nbf"), "nbf"), _time(value.get("exp"), "exp")
    if nbf is not None and exp is not None and exp < nbf:
        raise bad("attributes.exp must not be before attributes.nbf.")
    return Attributes(enabled=enabled, nbf=nbf, exp=exp)


def properties(body: dict[str, Any]) -> dict[str, Any]:
    """The settable properties of a secret (set and update): content type, attributes, tags."""
    return {
        "content_type": content_type(body.get("contentType")),
        "attributes": attributes(body.get("attributes")),
        "tags": tags(body.get("tags")),
    }


def skip_token(request: Request, kind: type[int] | type[str]) -> Any:
    """``$skiptoken`` from a ``nextLink``: a secret name or a version sequence number."""
    token = request.query_params.get(SKIP_TOKEN)
    if token is None:
        return None
    if kind is int:
        seq = ascii_int(token)
        if seq is None:
            raise bad("The skip token is not valid.")
        return seq
    if not _NAME.fullmatch(token):
        raise bad("The skip token is not valid.")
    return token.lower()


def page_size(request: Request) -> int:
    """``maxresults``: 1 to 25, as in Key Vault (25 when absent)."""
    raw = request.query_params.get("maxresults")
    if raw is None:
        return MAX_PAGE
    size = ascii_int(raw)
    if size is None or not 1 <= size <= MAX_PAGE:
        raise bad(f"maxresults must be an integer from 1 to {MAX_PAGE}.")
    return size
