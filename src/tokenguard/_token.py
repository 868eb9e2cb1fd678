"""Compact JWS parsing on the hot path: strict, bounded, and fast.

PyJWT's ``decode`` spends most of its time on a per-character base64 check; this
parser finds the two dots, then decodes each segment with one ``bytes.translate``
and ``binascii`` in strict mode, which together refuse anything outside base64url.
JSON must be UTF-8 objects without duplicate member names, ``NaN``/``Infinity`` or
non-finite numbers, and with at most :data:`MAX_JSON_CONTAINERS` objects and arrays (so
nesting never reaches the decoder's recursion guard, whose limit is process-wide state).
"""

from __future__ import annotations

import binascii
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any, Final, NamedTuple

from ._errors import InvalidToken

__all__ = [
    "DEFAULT_MAX_TOKEN_BYTES",
    "MAX_JSON_CONTAINERS",
    "ParsedToken",
    "TokenClaims",
    "b64url_decode",
    "parse_json_object",
    "parse_token",
    "split_token",
]

DEFAULT_MAX_TOKEN_BYTES: Final = 16 * 1024
#: Objects and arrays a header or payload may hold (Entra tokens hold a handful).
MAX_JSON_CONTAINERS: Final = 256

# base64url to standard base64 for binascii, in one pass that also turns the standard
# alphabet's own "+", "/" and "=" (and ".") into "!", which strict decoding refuses: a
# token spelt with them is malformed without a separate scan for each.
_TO_STD: Final = bytes.maketrans(b"-_+/=.", b"+/!!!!")
_PAD: Final = (b"", b"", b"==", b"=")
# Value of each base64url character; the low bits a final character must leave zero.
_B64_VALUE: Final = [0] * 256
for _i, _c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"):
    _B64_VALUE[_c] = _i
_SPARE_BITS: Final = (0, 0, 0b1111, 0b11)


class ParsedToken(NamedTuple):
    """A structurally valid, not yet verified compact JWS."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def b64url_decode(segment: bytes) -> bytes:
    """Decode one strict base64url segment (no padding, canonical final character).

    Anything outside the base64url alphabet is refused: ``+``, ``/``, ``=`` and ``.``
    by the translation, everything else (whitespace, non-ASCII) by ``binascii``'s
    strict mode.
    """
    rem = len(segment) % 4
    if rem == 1:
        raise InvalidToken("base64url segment has an impossible length", reason="malformed")
    # One token, one spelling: stray low bits in the last character are refused, so a
    # token cannot be re-spelt to dodge the verified-token cache or a deny-list.
    if rem and _B64_VALUE[segment[-1]] & _SPARE_BITS[rem]:
        raise InvalidToken("non-canonical base64url", reason="malformed")
    try:
        return binascii.a2b_base64(segment.translate(_TO_STD) + _PAD[rem], strict_mode=True)
    except binascii.Error as exc:
        raise InvalidToken("invalid base64url", reason="malformed") from exc


def split_token(
    token: str | bytes, max_bytes: int = DEFAULT_MAX_TOKEN_BYTES
) -> tuple[bytes, bytes, bytes, bytes]:
    """Split a compact JWS, checking only its shape (size, three non-empty segments).

    Returns ``(signing_input, header64, payload64, signature64)`` as bytes whose
    alphabet is checked when each segment is decoded (:func:`b64url_decode`).
    """
    if len(token) > max_bytes:
        raise InvalidToken("token exceeds the size limit", reason="token_too_large")
    if isinstance(token, str):
        if not token.isascii():
            raise InvalidToken("token is not ASCII", reason="malformed")
        data = token.encode("ascii")
    else:
        data = token
    first = data.find(b".")
    second = data.find(b".", first + 1)
    if first < 1 or second < first + 2 or second == len(data) - 1:
        raise InvalidToken("not a compact JWS of three segments", reason="malformed")
    # Only the shape is checked here: every segment is then decoded by b64url_decode,
    # which refuses any character outside base64url (a third ".", "+", "=", non-ASCII),
    # or found among the headers of tokens that already verified.
    return data[:second], data[:first], data[first + 1 : second], data[second + 1 :]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_unique_members,
    parse_constant=_reject_constant,
    parse_float=_finite_float,
)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse strict JSON that must be an object; any fault is ``malformed``."""
    # Two C-speed counts bound the nesting whatever sys.getrecursionlimit() says
    # (a library such as mkdocstrings raises it for the whole process); brackets in
    # strings count too, which only makes the bound stricter.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_CONTAINERS:
        raise InvalidToken("segment has too many JSON objects and arrays", reason="malformed")
    try:
        value = _DECODER.decode(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        # ValueError covers invalid UTF-8, JSON syntax, duplicates, NaN and over-long ints.
        raise InvalidToken("segment is not valid JSON", reason="malformed") from exc
    if type(value) is not dict:
        raise InvalidToken("segment is not a JSON object", reason="malformed")
    return value


def parse_token(token: str, max_bytes: int = DEFAULT_MAX_TOKEN_BYTES) -> ParsedToken:
    """Split and decode a compact JWS, checking structure only (no signature, no claims)."""
    signing_input, h64, p64, s64 = split_token(token, max_bytes)
    return ParsedToken(
        parse_json_object(b64url_decode(h64)),
        parse_json_object(b64url_decode(p64)),
        signing_input,
        b64url_decode(s64),
    )


class TokenClaims(Mapping[str, Any]):
    """The claims of a verified token, read-only, decoded from the token when first used.

    The verified-token cache keeps each token's bytes anyway; keeping the decoded
    claims too would more than double an entry (~1.7 KB of small objects), and most
    apps read the typed :class:`~tokenguard.Identity` fields, never ``claims``. The
    first access decodes the payload again (a few microseconds, once per token).
    """

    __slots__ = ("_claims", "_end", "_start", "_token")

    def __init__(self, token: bytes, start: int, end: int) -> None:
        self._token = token
        self._start = start
        self._end = end
        self._claims: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        claims = self._claims
        if claims is None:
            payload = self._token[self._start : self._end]
            claims = self._claims = parse_json_object(b64url_decode(payload))
        return claims

    def __getitem__(self, name: str) -> Any:
        return self._decoded()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return f"TokenClaims({self._decoded()!r})"
