"""Cache attacks: tokens built from a cached genuine token, which the verified-token cache
must never answer for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from ..kit import Kit, b64
from .rows import ACCEPTED, Attack, Probe, invalid, segments, with_header


def cached_then(k: Kit, change: Callable[[str], str]) -> Probe:
    """Validate a genuine token (so it is cached), then send ``change(token)``."""
    token = k.valid()
    return Probe(change(token), prime=(token,))


ROWS: Final = [
    Attack(
        "cache-same-claims-other-signature",
        "cache",
        "RFC 7515 §5.2 (cache must bind the signature)",
        "A cached token's header and payload with a zeroed signature",
        lambda k: cached_then(k, lambda t: k.resign(t, bytes(256))),
        invalid("bad_signature"),
    ),
    Attack(
        "cache-same-claims-stripped-signature",
        "cache",
        "jwt_tool -X n against a warm cache",
        "A cached token with its signature stripped",
        lambda k: cached_then(k, lambda t: t.rsplit(".", 1)[0] + "."),
        invalid("malformed"),
    ),
    Attack(
        "cache-signature-respelt",
        "cache",
        "RFC 4648 §3.5",
        "A cached token whose signature is re-spelt with stray low bits",
        lambda k: cached_then(k, lambda t: t[:-1] + chr(ord(t[-1]) ^ 1)),
        invalid("malformed"),
    ),
    Attack(
        "cache-header-reused-other-payload",
        "cache",
        "RFC 7515 §5.2",
        "A cached token's header (memoised) over a tampered payload and its signature",
        lambda k: cached_then(
            k,
            lambda t: ".".join(
                [
                    segments(t)[0],
                    b64(json.dumps(k.claims(roles=["Admin"])).encode()),
                    segments(t)[2],
                ]
            ),
        ),
        invalid("bad_signature"),
    ),
    Attack(
        "cache-alg-swapped",
        "cache",
        "RFC 8725 §3.1",
        "A cached token relabelled PS256 (same payload and signature)",
        lambda k: cached_then(k, lambda t: with_header(t, alg="PS256")),
        invalid("bad_signature"),
    ),
    Attack(
        "cache-exact-replay",
        "cache",
        "RFC 6750 §5.3 (replay is the bearer model)",
        "Control: the cached token itself is accepted again",
        lambda k: cached_then(k, lambda t: t),
        ACCEPTED,
    ),
]
