"""Key-source attacks: keys the token points at (``jku``, ``x5u``, ``jwk``, ``x5c``) and
trusted keys used outside the issuer or cloud they belong to.
"""

from __future__ import annotations

import json
from typing import Final

from ..kit import Kit
from .rows import Attack, bearer, invalid, template_token, without_kid


def _attacker_jwk(k: Kit) -> str:
    from jwt.algorithms import RSAAlgorithm

    return RSAAlgorithm.to_jwk(k.attacker_rsa.public_key())


_FOREIGN: Final = "https://attacker.test/jwks.json"

ROWS: Final = [
    Attack(
        "jku-attacker-known-kid",
        "key-source",
        "RFC 7515 §4.1.2; jwt_tool -X s",
        "`jku` to the attacker's JWKS, known kid, attacker's signature",
        lambda k: bearer(k.signed(k.header(jku=_FOREIGN), key=k.attacker_rsa)),
        invalid("bad_signature"),
    ),
    Attack(
        "jku-attacker-new-kid",
        "key-source",
        "RFC 7515 §4.1.2; jwt_tool -X s",
        "`jku` to the attacker's JWKS with the attacker's own kid",
        lambda k: bearer(k.signed(k.header("attacker-key", jku=_FOREIGN), key=k.attacker_rsa)),
        invalid("unknown_key"),
    ),
    Attack(
        "jku-loopback-ssrf",
        "key-source",
        "RFC 8725 §3.10 (SSRF)",
        "`jku` pointing at a loopback service",
        lambda k: bearer(
            k.signed(k.header("ssrf", jku="http://127.0.0.1:2375/v1/keys"), key=k.attacker_rsa)
        ),
        invalid("unknown_key"),
    ),
    Attack(
        "jku-trusted-host-other-path",
        "key-source",
        "RFC 7515 §4.1.2 (open redirect)",
        "`jku` on the issuer's own host but another path",
        lambda k: bearer(
            k.signed(
                k.header(jku="https://login.tokenguard.test/redirect?to=" + _FOREIGN),
                key=k.attacker_rsa,
            )
        ),
        invalid("bad_signature"),
    ),
    Attack(
        "x5u-attacker",
        "key-source",
        "RFC 7515 §4.1.5",
        "`x5u` to the attacker's certificate",
        lambda k: bearer(
            k.signed(k.header(x5u="https://attacker.test/cert.pem"), key=k.attacker_rsa)
        ),
        invalid("bad_signature"),
    ),
    Attack(
        "jwk-embedded-known-kid",
        "key-source",
        "CVE-2018-0114; jwt_tool -X i",
        "Attacker's public key embedded as `jwk`, known kid",
        lambda k: bearer(
            k.signed(
                k.header(jwk=json.loads(_attacker_jwk(k))),
                key=k.attacker_rsa,
            )
        ),
        invalid("bad_signature"),
    ),
    Attack(
        "jwk-embedded-no-kid",
        "key-source",
        "CVE-2018-0114; jwt_tool -X i",
        "Attacker's public key embedded as `jwk`, no kid",
        lambda k: bearer(
            k.signed(without_kid(k.header(jwk=json.loads(_attacker_jwk(k)))), key=k.attacker_rsa)
        ),
        invalid("unknown_key"),
    ),
    Attack(
        "x5c-attacker-chain",
        "key-source",
        "RFC 7515 §4.1.6",
        "Attacker's self-signed certificate as `x5c`",
        lambda k: bearer(
            k.signed(k.header(x5c=k.public_jwk(k.rsa_kid)["x5c"]), key=k.attacker_rsa)
        ),
        invalid("bad_signature"),
    ),
    Attack(
        "key-of-other-issuer",
        "key-source",
        "RFC 8725 §3.8 (keys belong to one issuer)",
        "Main issuer's claims signed with another trusted issuer's key and kid",
        lambda k: bearer(
            k.signed(
                k.header(k.generic.signing_kid),
                key=k.private(k.generic.signing_kid, k.generic),
            )
        ),
        invalid("unknown_key"),
    ),
    Attack(
        "consumers-key-work-token",
        "key-source",
        "Microsoft.IdentityModel IDX40005 (signing key issuer)",
        "Work-tenant token signed by a personal-account key of the same key set",
        lambda k: bearer(template_token(k, tid=k.multi.tenant_id, kid="consumers")),
        invalid("key_issuer_mismatch"),
    ),
    Attack(
        "key-of-another-cloud",
        "key-source",
        "Microsoft.IdentityModel IDX40012 (cloud instance)",
        "Token signed by a `microsoftonline.us` key of the set (cloud instance checked)",
        lambda k: bearer(template_token(k, tid=k.multi.tenant_id, kid="us-cloud")),
        invalid("unknown_key"),
    ),
]
