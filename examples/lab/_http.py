"""Small HTTP helpers the identity endpoints and the toy services share: strict integers
from text, bounded body reading, printable-ASCII filtering."""

from __future__ import annotations

from starlette.requests import Request

__all__ = ["BodyTooLarge", "ascii_int", "printable", "read_body"]


def ascii_int(text: str, max_digits: int = 18) -> int | None:
    """``text`` as a non-negative integer if it is 1 to ``max_digits`` ASCII digits, else None.

    ``str.isdigit`` accepts characters such as superscript two that ``int`` refuses.
    """
    if not 0 < len(text) <= max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def printable(text: str, limit: int = 200) -> str:
    """At most ``limit`` characters of ``text``, keeping printable ASCII only."""
    return "".join(c for c in text[:limit] if " " <= c <= "~")


class BodyTooLarge(Exception):
    """The request body is larger than the service accepts."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {limit} bytes.")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing more than ``limit`` bytes without buffering them.

    When this raises, the rest of the body is left unread; uvicorn discards it after the
    answer, so the client still reads the error instead of a reset connection.
    """
    declared = ascii_int(request.headers.get("content-length", ""))
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
