"""Claim attacks: genuinely signed tokens whose ``exp``, ``nbf``, ``iat``, ``iss``, ``aud``,
``typ``, permissions or ``crit`` are wrong, so a rejection is down to the claim under test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ..kit import GENERIC_AUDIENCE, NOW, STORAGE, VAULT, Kit
from .rows import ACCEPTED, Attack, Expect, bearer, invalid, template_token


def generic_token(k: Kit, typ: Any, **claims: Any) -> str:
    body = {**k.generic.claims(GENERIC_AUDIENCE), "scope": "tasks.read"}  # RFC 9068 scope
    body.update(claims)
    header = {"typ": typ, "alg": "RS256", "kid": k.generic.signing_kid}
    if typ is None:
        del header["typ"]
    return k.signed(header, body, key=k.private(k.generic.signing_kid, k.generic))


def template_issuer(tid: str) -> str:
    return f"https://login.microsoftonline.test/{tid}/v2.0"


def _claim_row(name: str, source: str, title: str, expect: Expect, **claims: Any) -> Attack:
    return Attack(name, "claims", source, title, lambda k: bearer(k.valid(**claims)), expect)


_EXP: Final = "RFC 7519 §4.1.4"
_NBF: Final = "RFC 7519 §4.1.5"
_IAT: Final = "RFC 7519 §4.1.6"
_ISS: Final = "RFC 7519 §4.1.1; RFC 8725 §3.8"
_AUD: Final = "RFC 7519 §4.1.3; RFC 8725 §3.9"


def _iss_row(
    name: str, title: str, make_iss: Callable[[Kit], Any], reason: str = "wrong_issuer"
) -> Attack:
    return Attack(
        name, "claims", _ISS, title, lambda k: bearer(k.valid(iss=make_iss(k))), invalid(reason)
    )


ROWS: Final = [
    Attack(
        "exp-missing",
        "claims",
        _EXP,
        "No `exp`",
        lambda k: bearer(k.valid(exp=None)),
        invalid("missing_claim"),
    ),
    _claim_row(
        "exp-string", _EXP, "`exp` is a numeric string", invalid("invalid_claim"), exp="9999999999"
    ),
    _claim_row("exp-boolean", _EXP, "`exp` is `true`", invalid("invalid_claim"), exp=True),
    _claim_row("exp-array", _EXP, "`exp` is an array", invalid("invalid_claim"), exp=[NOW + 3600]),
    _claim_row("exp-object", _EXP, "`exp` is an object", invalid("invalid_claim"), exp={"$gt": 0}),
    _claim_row("exp-past", _EXP, "Expired an hour ago", invalid("expired"), exp=NOW - 3600),
    _claim_row(
        "exp-leeway-edge",
        _EXP,
        "`exp` exactly `leeway` (60 s) ago",
        invalid("expired"),
        exp=NOW - 60,
    ),
    _claim_row(
        "exp-inside-leeway",
        _EXP,
        "Control: `exp` 59 s ago (inside the leeway)",
        ACCEPTED,
        exp=NOW - 59,
    ),
    _claim_row("nbf-future", _NBF, "`nbf` 61 s ahead", invalid("not_yet_valid"), nbf=NOW + 61),
    _claim_row(
        "nbf-inside-leeway",
        _NBF,
        "Control: `nbf` 60 s ahead (inside the leeway)",
        ACCEPTED,
        nbf=NOW + 60,
    ),
    _claim_row("nbf-string", _NBF, "`nbf` is a string", invalid("invalid_claim"), nbf=str(NOW)),
    _claim_row("nbf-boolean", _NBF, "`nbf` is `false`", invalid("invalid_claim"), nbf=False),
    _claim_row(
        "iat-future", _IAT, "`iat` an hour ahead", invalid("issued_in_future"), iat=NOW + 3600
    ),
    _claim_row("iat-string", _IAT, "`iat` is a string", invalid("invalid_claim"), iat=str(NOW)),
    Attack(
        "iss-missing",
        "claims",
        _ISS,
        "No `iss`",
        lambda k: bearer(k.valid(iss=None)),
        invalid("missing_claim"),
    ),
    _iss_row(
        "iss-prefix",
        "`iss` is a prefix of the trusted issuer",
        lambda k: "https://sts.windows.net/",
    ),
    _iss_row(
        "iss-superstring", "`iss` extends the trusted issuer", lambda k: k.main.issuer + "evil/"
    ),
    _iss_row(
        "iss-substring", "`iss` is a substring of the trusted issuer", lambda k: k.main.issuer[8:]
    ),
    _iss_row("iss-upper-case", "`iss` in upper case", lambda k: k.main.issuer.upper()),
    _iss_row(
        "iss-no-trailing-slash",
        "`iss` without its trailing slash",
        lambda k: k.main.issuer.rstrip("/"),
    ),
    _iss_row(
        "iss-double-slash", "`iss` with a second trailing slash", lambda k: k.main.issuer + "/"
    ),
    _iss_row(
        "iss-http",
        "`iss` with http instead of https",
        lambda k: k.main.issuer.replace("https", "http"),
    ),
    _iss_row(
        "iss-other-tenant",
        "`iss` of another tenant",
        lambda k: f"https://sts.windows.net/{k.other_tenant}/",
    ),
    _iss_row("iss-not-string", "`iss` is an array", lambda k: [k.main.issuer], "malformed"),
    Attack(
        "template-tenant-not-allowed",
        "claims",
        "RFC 8725 §3.8 (multi-tenant issuers)",
        "Template issuer, consistent `iss`/`tid` of a tenant outside the allow-list",
        lambda k: bearer(template_token(k, tid="11111111-2222-3333-4444-555555555555")),
        invalid("wrong_tenant"),
    ),
    Attack(
        "template-tid-mismatch",
        "claims",
        "RFC 8725 §3.8",
        "Template issuer, `iss` of one allowed tenant, `tid` of another",
        lambda k: bearer(
            template_token(k, tid=k.other_tenant, iss=template_issuer(k.multi.tenant_id))
        ),
        invalid("wrong_issuer"),
    ),
    Attack(
        "template-tid-traversal",
        "claims",
        "RFC 8725 §3.8",
        "Template issuer, `tid` `../x` filling the `iss` template",
        lambda k: bearer(template_token(k, tid="../x", iss=template_issuer("../x"))),
        invalid("wrong_issuer"),
    ),
    Attack(
        "template-literal-placeholder",
        "claims",
        "RFC 8725 §3.8",
        "`iss` is the template itself, `{tenantid}` unfilled",
        lambda k: bearer(template_token(k, tid=k.multi.tenant_id, iss=k.multi.issuer)),
        invalid("wrong_issuer"),
    ),
    Attack(
        "template-allowed-tenant",
        "claims",
        "RFC 8725 §3.8",
        "Control: template issuer, allowed tenant",
        lambda k: bearer(template_token(k, tid=k.other_tenant)),
        ACCEPTED,
    ),
    _claim_row(
        "aud-mismatch",
        _AUD,
        "Token for another resource",
        invalid("wrong_audience"),
        aud="https://management.azure.com",
    ),
    Attack(
        "aud-missing",
        "claims",
        _AUD,
        "No `aud`",
        lambda k: bearer(k.valid(aud=None)),
        invalid("missing_claim"),
    ),
    _claim_row(
        "aud-array-no-match",
        _AUD,
        "`aud` array without our audience",
        invalid("wrong_audience"),
        aud=["https://a.test", "https://b.test"],
    ),
    _claim_row(
        "aud-array-match",
        _AUD,
        "Control: `aud` array holding our audience",
        ACCEPTED,
        aud=["https://a.test", VAULT],
    ),
    _claim_row(
        "aud-array-non-string",
        _AUD,
        "`aud` array with a number",
        invalid("invalid_claim"),
        aud=[VAULT, 1],
    ),
    _claim_row("aud-number", _AUD, "`aud` is a number", invalid("invalid_claim"), aud=1),
    _claim_row(
        "aud-upper-case", _AUD, "`aud` in upper case", invalid("wrong_audience"), aud=VAULT.upper()
    ),
    _claim_row(
        "aud-trailing-slash",
        _AUD,
        "`aud` with an extra trailing slash",
        invalid("wrong_audience"),
        aud=VAULT + "/",
    ),
    _claim_row(
        "aud-no-trailing-slash",
        _AUD,
        "`aud` without its trailing slash",
        invalid("wrong_audience"),
        aud=STORAGE.rstrip("/"),
    ),
    _claim_row("aud-empty-array", _AUD, "`aud` is `[]`", invalid("wrong_audience"), aud=[]),
    _claim_row(
        "aud-of-other-issuer",
        "RFC 8725 §3.9 (audiences are per issuer)",
        "Main issuer token for another issuer's audience",
        invalid("wrong_audience"),
        aud=GENERIC_AUDIENCE,
    ),
    _claim_row(
        "id-token-nonce",
        "OpenID Connect Core §2; RFC 8725 §2.8",
        "ID token (`nonce`) presented as an access token",
        invalid("wrong_type"),
        nonce="n-0S6_WzA2Mj",
    ),
    _claim_row(
        "id-token-at-hash",
        "OpenID Connect Core §3.1.3.6",
        "ID token (`at_hash`) presented as an access token",
        invalid("wrong_type"),
        at_hash="77QmUPtjPfzWtF2AnpK9RQ",
    ),
    _claim_row(
        "no-permissions",
        "Microsoft.Identity.Web IDW10201",
        "Valid token with neither `roles` nor `scp`",
        invalid("no_permissions"),
        roles=None,
    ),
    _claim_row(
        "no-permissions-empty-values",
        "Microsoft.Identity.Web IDW10201",
        'Valid token whose `roles` is `[""]` and `scp` is blank',
        invalid("no_permissions"),
        roles=[""],
        scp=" ",
    ),
    Attack(
        "rfc9068-typ-jwt",
        "claims",
        "RFC 9068 §4; RFC 8725 §3.11",
        "RFC 9068 issuer: `typ: JWT` instead of `at+jwt`",
        lambda k: bearer(generic_token(k, "JWT")),
        invalid("wrong_type"),
    ),
    Attack(
        "rfc9068-typ-missing",
        "claims",
        "RFC 9068 §4",
        "RFC 9068 issuer: no `typ`",
        lambda k: bearer(generic_token(k, None)),
        invalid("wrong_type"),
    ),
    Attack(
        "rfc9068-typ-not-string",
        "claims",
        "RFC 9068 §4",
        'RFC 9068 issuer: `typ: ["at+jwt"]`',
        lambda k: bearer(generic_token(k, ["at+jwt"])),
        invalid("wrong_type"),
    ),
    Attack(
        "rfc9068-typ-at-jwt",
        "claims",
        "RFC 9068 §2.1",
        "Control: RFC 9068 issuer, `typ: application/at+jwt`",
        lambda k: bearer(generic_token(k, "application/at+jwt")),
        ACCEPTED,
    ),
    Attack(
        "crit-unknown",
        "claims",
        "RFC 7515 §4.1.11",
        "`crit` naming an extension we do not implement (signed)",
        lambda k: bearer(k.signed(k.header(crit=["exp"], exp=NOW + 3600))),
        invalid("unsupported_critical"),
    ),
    Attack(
        "crit-b64-false",
        "claims",
        "RFC 7797 §6",
        "Unencoded payload option `b64: false` under `crit` (signed)",
        lambda k: bearer(k.signed(k.header(crit=["b64"], b64=False))),
        invalid("unsupported_critical"),
    ),
]
