"""The attack catalogue: one row per attack, with its source and the expected answer.

Each row builds a :class:`Probe` (the token handed to ``TokenValidator.validate`` and the
HTTP request sent through ``TokenGuardMiddleware``) from a :class:`~tests.security.kit.Kit`
and says what must come back: status, RFC 6750 error code and ``reason``.
``python -m tests.security.catalogue`` prints the table that the docs site's security
page (``docs/security.md``) carries; ``--write`` refreshes it there.

Tokens in the claim rows are genuinely signed by the trusted key, so a rejection is
down to the claim under test and not to the signature.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

from .attacks import algorithm, cache, claims, dos, key_source, kid, request, structure
from .attacks.rows import Attack, Expect, Probe

__all__ = [
    "ATTACKS",
    "DOCUMENT",
    "Attack",
    "Expect",
    "Probe",
    "document_block",
    "markdown_table",
]

ATTACKS: Final[tuple[Attack, ...]] = (
    *request.ROWS,
    *structure.ROWS,
    *algorithm.ROWS,
    *key_source.ROWS,
    *kid.ROWS,
    *claims.ROWS,
    *cache.ROWS,
    *dos.ROWS,
)


def markdown_table() -> str:
    """The catalogue as a Markdown table (``docs/security.md`` carries it)."""
    lines = ["| # | id | area | attack | source | expected |", "|---|---|---|---|---|---|"]
    for number, attack in enumerate(ATTACKS, 1):
        lines.append(
            f"| {number} | `{attack.id}` | {attack.area} | {attack.title} | {attack.source} "
            f"| {attack.expect} |"
        )
    return "\n".join(lines)


BEGIN: Final = "<!-- attack-catalogue:begin (python -m tests.security.catalogue --write) -->"
END: Final = "<!-- attack-catalogue:end -->"
#: The page that carries the table between :data:`BEGIN` and :data:`END`.
DOCUMENT: Final = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def document_block(text: str) -> str:
    """The catalogue part of a document (between :data:`BEGIN` and :data:`END`)."""
    start = text.index(BEGIN) + len(BEGIN)
    return text[start : text.index(END, start)].strip("\n")


def main(argv: list[str]) -> None:
    """Print the table, or with ``--write`` refresh it in :data:`DOCUMENT`."""
    if argv[1:] != ["--write"]:
        print(markdown_table())
        return
    text = DOCUMENT.read_text(encoding="utf-8")
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END, start)
    DOCUMENT.write_text(f"{text[:start]}\n{markdown_table()}\n{text[end:]}", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv)
