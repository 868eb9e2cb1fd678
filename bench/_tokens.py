"""The benchmark's tokens: Entra managed-identity-shaped, 1.3 KB with RS256 (2048-bit).

``LocalIssuer.mint`` makes 1.5 KB tokens (long ``aio``/``rh`` values plus ``idp`` and
``xms_tcdt``); the issue asks for about 1.2 KB, so those are trimmed here, which gives
1.3 KB (1.0 KB with ES256/EdDSA). Every claim the validator reads stays. Each token
carries one app role: a validator's default configuration refuses tokens that grant
nothing, and the benchmark measures the default configuration.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from typing import Any, Final

from tokenguard.testing import LocalIssuer

__all__ = ["AUDIENCE", "mint_many", "shaped", "unknown_kid_tokens"]

AUDIENCE: Final = "https://vault.azure.net"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _overrides() -> dict[str, Any]:
    return {
        "aio": _b64(secrets.token_bytes(24)),
        "rh": "0." + _b64(secrets.token_bytes(24)) + ".",
        "idp": None,
        "xms_tcdt": None,
        "roles": ["Secrets.Read"],
        "xms_mirid": (
            f"/subscriptions/{uuid.uuid4()}/resourcegroups/bench-rg/providers/"
            "Microsoft.Compute/virtualMachines/bench-vm"
        ),
    }


def shaped(issuer: LocalIssuer) -> str:
    """One fresh managed-identity token for :data:`AUDIENCE` (new ``oid``, ``uti``, ...)."""
    return issuer.mint(AUDIENCE, claims=_overrides())


def mint_many(issuer: LocalIssuer, count: int) -> list[str]:
    """``count`` distinct tokens (each one's cache key is new)."""
    return [shaped(issuer) for _ in range(count)]


def unknown_kid_tokens(template: str, count: int) -> list[str]:
    """``count`` copies of ``template`` whose header names a random, unpublished ``kid``.

    The signature no longer matches, which does not matter: the key lookup that a
    flood attacks comes before the signature check.
    """
    _, payload, signature = template.split(".")
    tokens = []
    for _ in range(count):
        kid = _b64(secrets.token_bytes(15))
        header = {"typ": "JWT", "alg": "RS256", "kid": kid, "x5t": kid}
        h64 = _b64(json.dumps(header, separators=(",", ":")).encode())
        tokens.append(f"{h64}.{payload}.{signature}")
    return tokens
