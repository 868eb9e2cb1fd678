"""Wire shapes of the toy Blob Storage: XML bodies, response headers, request header parsing."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from email.utils import formatdate
from typing import Final
from urllib.parse import unquote, unquote_to_bytes
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response

from .._http import ascii_int
from ..resource import ServiceError
from .store import Blob, Conditions, Container, ContentSettings, StorageError

__all__ = [
    "Listing",
    "blob_headers",
    "blobs_xml",
    "conditions",
    "container_headers",
    "containers_xml",
    "content_settings",
    "decode_marker",
    "encode_marker",
    "error_response",
    "http_date",
    "listing",
    "md5_header",
    "metadata",
    "page_size",
    "parse_range",
    "xml_text",
]

MAX_PAGE: Final = 5000
_MAX_METADATA_BYTES: Final = 8 * 1024
_METADATA_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RANGE: Final = re.compile(r"bytes=([0-9]{1,18})-([0-9]{0,18})")
_MAX_MARKER: Final = 4096
#: Longest ``prefix`` or ``delimiter`` of a listing (a blob name is at most 1024 characters).
_MAX_LISTING_TEXT: Final = 1024
_XML_DECLARATION: Final = b'<?xml version="1.0" encoding="utf-8"?>'


def xml_text(text: str) -> bool:
    """Whether every character of ``text`` is one XML 1.0 can carry and the lab allows
    (no control characters, no surrogates, no U+FFFE/U+FFFF)."""
    return all(
        " " <= c < "\x7f" or "\xa0" <= c < "\ud800" or "\ue000" <= c < "\ufffe" or c > "\uffff"
        for c in text
    )


def http_date(timestamp: float) -> str:
    """RFC 1123 date, as in ``Last-Modified``."""
    return formatdate(timestamp, usegmt=True)


def _iso_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def error_response(exc: ServiceError, request_id: str) -> Response:
    """Storage's XML error with ``x-ms-error-code`` (and the error's own headers)."""
    message = f"{exc.message}\nRequestId:{request_id}\nTime:{_iso_now()}"
    body = f"<Error><Code>{exc.code}</Code><Message>{escape(message)}</Message>"
    if exc.detail is not None:
        body += f"<AuthenticationErrorDetail>{escape(exc.detail)}</AuthenticationErrorDetail>"
    headers = {"x-ms-error-code": exc.code, **exc.headers}
    return Response(
        _XML_DECLARATION + (body + "</Error>").encode("utf-8"),
        status_code=exc.status,
        headers=headers,
        media_type="application/xml",
    )


def _xml(root: ET.Element) -> Response:
    return Response(
        _XML_DECLARATION + ET.tostring(root, encoding="unicode").encode("utf-8"),
        media_type="application/xml",
    )


# -- request parsing ---------------------------------------------------------------


def _invalid_header(name: str, why: str) -> StorageError:
    return StorageError(400, "InvalidHeaderValue", f"The value for the header {name} {why}.")


def metadata(request: Request) -> dict[str, str]:
    """``x-ms-meta-{name}`` headers; names must be C# identifiers, 8 KiB in all."""
    found: dict[str, str] = {}
    total = 0
    for key, value in request.headers.items():
        if not key.startswith("x-ms-meta-"):
            continue
        name = key[len("x-ms-meta-") :]
        if not _METADATA_NAME.fullmatch(name):
            raise StorageError(400, "InvalidMetadata", "Metadata names must be C# identifiers.")
        total += len(name) + len(value)
        found[name] = value
    if total > _MAX_METADATA_BYTES:
        raise StorageError(400, "MetadataTooLarge", "The metadata exceeds 8 KiB.")
    return found


def content_settings(request: Request) -> ContentSettings:
    """The blob's content headers: ``x-ms-blob-content-*``, else the request's own type."""
    get = request.headers.get
    return ContentSettings(
        content_type=get("x-ms-blob-content-type") or get("content-type"),
        content_encoding=get("x-ms-blob-content-encoding"),
        content_language=get("x-ms-blob-content-language"),
        content_disposition=get("x-ms-blob-content-disposition"),
        cache_control=get("x-ms-blob-cache-control"),
    )


def md5_header(request: Request, name: str) -> bytes | None:
    """A base64 MD5 header, decoded (400 if it is not 16 bytes of base64)."""
    raw = request.headers.get(name)
    if raw is None:
        return None
    try:
        digest = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid_header(name, "is not base64") from None
    if len(digest) != 16:
        raise _invalid_header(name, "is not an MD5 hash")
    return digest


def _etags(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset(t.strip().removeprefix("W/").strip('"') for t in value.split(","))


def conditions(request: Request) -> Conditions:
    """``If-Match`` and ``If-None-Match``."""
    return Conditions(
        if_match=_etags(request.headers.get("if-match")),
        if_none_match=_etags(request.headers.get("if-none-match")),
    )


def parse_range(request: Request) -> tuple[int, int | None] | None:
    """``x-ms-range`` (preferred) or ``Range``: ``bytes=start-[end]``; 400 when malformed."""
    for name in ("x-ms-range", "range"):
        raw = request.headers.get(name)
        if raw is None:
            continue
        match = _RANGE.fullmatch(raw.strip())
        if match is None:
            raise _invalid_header(name, "is not a single range bytes=start-[end]")
        start = int(match[1])
        end = int(match[2]) if match[2] else None
        if end is not None and end < start:
            raise _invalid_header(name, "ends before it starts")
        return start, end
    return None


def page_size(request: Request) -> int:
    """``maxresults``: from 1; more than 5000 means 5000, as in Azure."""
    raw = request.query_params.get("maxresults")
    if raw is None:
        return MAX_PAGE
    size = ascii_int(raw, 10)
    if size is None:
        raise StorageError(400, "InvalidQueryParameterValue", "maxresults must be an integer.")
    if size < 1:
        raise StorageError(400, "OutOfRangeQueryParameterValue", "maxresults must be at least 1.")
    return min(size, MAX_PAGE)


@dataclass(frozen=True)
class Listing:
    """The checked parameters of a listing request; what the answer echoes comes from here."""

    prefix: str
    delimiter: str | None
    marker: str | None
    #: The name to continue after (decoded from ``marker``; "" from the start).
    after: str
    size: int
    #: ``maxresults`` as sent (digits only once ``size`` is known), for the echo.
    maxresults: str | None
    #: Whether ``include=`` asks for each entry's metadata.
    metadata: bool

    def echoed(self) -> list[tuple[str, str]]:
        """The elements the answer repeats from the request, in Azure's order."""
        values = [
            ("Prefix", self.prefix),
            ("Marker", self.marker or ""),
            ("MaxResults", self.maxresults or ""),
            ("Delimiter", self.delimiter or ""),
        ]
        return [(element, value) for element, value in values if value]


def _listing_text(request: Request, name: str) -> str:
    """A query parameter decoded strictly: 400 unless it is UTF-8 that XML 1.0 can carry.

    Starlette turns invalid UTF-8 (a lone surrogate's bytes) into U+FFFD; a listing must
    not answer for another prefix than the one asked, so it reads the raw query instead.
    """
    raw = request.scope.get("query_string", b"").decode("latin-1")
    text, utf8 = "", True
    for pair in raw.split("&"):
        key, _, value = pair.partition("=")
        if unquote(key.replace("+", " ")) != name:
            continue
        try:  # the last one wins, as in Starlette
            text, utf8 = unquote_to_bytes(value.replace("+", " ")).decode("utf-8"), True
        except UnicodeDecodeError:
            text, utf8 = "", False
    if not utf8 or len(text) > _MAX_LISTING_TEXT or not xml_text(text):
        raise StorageError(
            400,
            "InvalidQueryParameterValue",
            f"The {name} is longer than {_MAX_LISTING_TEXT} characters, not UTF-8, or holds "
            "characters XML cannot carry (control characters, surrogates).",
        )
    return text


def listing(request: Request, *, delimited: bool) -> Listing:
    """``prefix``, ``delimiter`` (blob listings only), ``marker``, ``maxresults`` and
    ``include``, checked."""
    marker = request.query_params.get("marker") or None
    include = request.query_params.get("include", "")
    return Listing(
        prefix=_listing_text(request, "prefix"),
        delimiter=(_listing_text(request, "delimiter") or None) if delimited else None,
        marker=marker,
        after=decode_marker(marker),
        size=page_size(request),
        maxresults=request.query_params.get("maxresults"),
        metadata="metadata" in {p.strip().lower() for p in include.split(",")},
    )


def encode_marker(after: str) -> str:
    """An opaque continuation marker for the name to continue after."""
    return "1!" + base64.urlsafe_b64encode(after.encode("utf-8")).decode("ascii").rstrip("=")


def decode_marker(marker: str | None) -> str:
    """The name to continue after ("" to start); 400 for a marker we did not issue."""
    if not marker:
        return ""
    try:
        if len(marker) > _MAX_MARKER or not marker.startswith("1!"):
            raise ValueError(marker)
        data = marker[2:] + "=" * (-len(marker[2:]) % 4)
        return base64.b64decode(data, altchars=b"-_", validate=True).decode("utf-8")
    except (ValueError, binascii.Error):
        raise StorageError(
            400, "InvalidQueryParameterValue", "The marker is not one this service issued."
        ) from None


# -- properties: in listings and as response headers ---------------------------------

#: No leases in the lab: every container and blob is unlocked and available.
_UNLEASED: Final = {"LeaseStatus": "unlocked", "LeaseState": "available"}
#: Listed properties a response sends under HTTP's own header of the same name; every
#: other one goes as ``x-ms-`` and its name in kebab case (``LeaseStatus``:
#: ``x-ms-lease-status``), as Storage names them.
_HTTP_HEADERS: Final = frozenset(
    {
        "Last-Modified",
        "Content-Length",
        "Content-Type",
        "Content-Encoding",
        "Content-Language",
        "Content-MD5",
        "Cache-Control",
        "Content-Disposition",
    }
)
_WORD_START: Final = re.compile(r"(?<=[a-z])(?=[A-Z])")
#: Blob properties whose headers depend on the range served: the handlers set them.
_PER_RANGE: Final = frozenset({"Content-Length", "Content-MD5"})


def _header(element: str) -> str:
    if element == "Etag":
        return "ETag"
    if element in _HTTP_HEADERS:
        return element
    return "x-ms-" + _WORD_START.sub("-", element).lower()


def _headers(
    properties: dict[str, str | None], meta: dict[str, str], *, skip: frozenset[str] = frozenset()
) -> dict[str, str]:
    headers = {
        _header(element): value
        for element, value in properties.items()
        if value is not None and element not in skip
    }
    headers.update({f"x-ms-meta-{k}": v for k, v in meta.items()})
    return headers


def _container_properties(c: Container) -> dict[str, str | None]:
    """A container's properties, named and ordered as a listing shows them."""
    return {
        "Last-Modified": http_date(c.last_modified),
        "Etag": c.etag,
        **_UNLEASED,
        "DefaultEncryptionScope": "$account-encryption-key",
        "DenyEncryptionScopeOverride": "false",
        "HasImmutabilityPolicy": "false",
        "HasLegalHold": "false",
        "ImmutableStorageWithVersioningEnabled": "false",
    }


def _blob_properties(b: Blob) -> dict[str, str | None]:
    """A blob's properties, named and ordered as a listing shows them (``None``: unset)."""
    content = b.content
    return {
        "Creation-Time": http_date(b.created),
        "Last-Modified": http_date(b.last_modified),
        "Etag": b.etag,
        "Content-Length": str(b.size),
        "Content-Type": content.content_type or "application/octet-stream",
        "Content-Encoding": content.content_encoding,
        "Content-Language": content.content_language,
        "Content-MD5": b.md5_b64,
        "Cache-Control": content.cache_control,
        "Content-Disposition": content.content_disposition,
        "BlobType": "BlockBlob",
        "AccessTier": "Hot",
        "AccessTierInferred": "true",
        **_UNLEASED,
        "ServerEncrypted": "true",
    }


def container_headers(c: Container) -> dict[str, str]:
    """Headers of Get Container Properties."""
    return _headers(_container_properties(c), c.metadata)


def blob_headers(b: Blob) -> dict[str, str]:
    """Headers describing a blob (Get Blob / Get Blob Properties), without length or range."""
    headers = _headers(_blob_properties(b), b.metadata, skip=_PER_RANGE)
    headers["Accept-Ranges"] = "bytes"
    return headers


# -- list bodies ---------------------------------------------------------------------


def _listing(endpoint: str, query: Listing, extra: dict[str, str] | None = None) -> ET.Element:
    root = ET.Element("EnumerationResults", {"ServiceEndpoint": endpoint, **(extra or {})})
    for element, value in query.echoed():
        ET.SubElement(root, element).text = value
    return root


def _entry(
    listed: ET.Element,
    tag: str,
    name: str,
    properties: dict[str, str | None],
    query: Listing,
    meta: dict[str, str],
) -> None:
    """One listed container or blob: ``<Name>``, ``<Properties>`` (the unset left out) and,
    when the listing asks for it, ``<Metadata>``."""
    item = ET.SubElement(listed, tag)
    ET.SubElement(item, "Name").text = name
    element = ET.SubElement(item, "Properties")
    for key, value in properties.items():
        if value is not None:
            ET.SubElement(element, key).text = value
    if query.metadata:
        element = ET.SubElement(item, "Metadata")
        for key, value in meta.items():
            ET.SubElement(element, key).text = value


def _page_end(root: ET.Element, after: str | None) -> Response:
    """Close a listing with ``<NextMarker>``: the marker to continue after ``after`` (the
    last name listed), empty on the last page."""
    ET.SubElement(root, "NextMarker").text = None if after is None else encode_marker(after)
    return _xml(root)


def containers_xml(
    endpoint: str, query: Listing, containers: list[Container], after: str | None
) -> Response:
    """List Containers: ``<EnumerationResults><Containers><Container>...``."""
    root = _listing(endpoint, query)
    listed = ET.SubElement(root, "Containers")
    for c in containers:
        _entry(listed, "Container", c.name, _container_properties(c), query, c.metadata)
    return _page_end(root, after)


def blobs_xml(
    endpoint: str,
    container: str,
    query: Listing,
    entries: list[Blob | str],
    after: str | None,
) -> Response:
    """List Blobs (flat or with a delimiter): ``<Blobs><Blob>...<BlobPrefix>...``."""
    root = _listing(endpoint, query, {"ContainerName": container})
    listed = ET.SubElement(root, "Blobs")
    for entry in entries:
        if isinstance(entry, str):
            ET.SubElement(ET.SubElement(listed, "BlobPrefix"), "Name").text = entry
        else:
            _entry(listed, "Blob", entry.name, _blob_properties(entry), query, entry.metadata)
    return _page_end(root, after)
