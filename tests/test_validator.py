"""Token validation through the public API: signature, algorithms, claims, issuers, cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tokenguard import InvalidToken, Issuer, KeysUnavailable, TokenValidator
from tokenguard.testing import LocalIssuer

from .helpers import FakeClock, RecordingObserver, validator_of

pytestmark = pytest.mark.anyio

VAULT = "https://vault.azure.net"
#: A role for tokens that must pass: by default a token granting nothing is refused.
ROLE = ["Secrets.Read"]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def reason(validator: TokenValidator, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        await validator.validate(token)
    return info.value.reason


@pytest.fixture
def validator(session_issuer: LocalIssuer) -> TokenValidator:
    return session_issuer.validator(VAULT)


async def test_valid_managed_identity_token(
    session_issuer: LocalIssuer, validator: TokenValidator
) -> None:
    token = session_issuer.mint(VAULT, roles=["Secrets.Read"], object_id="oid-1", app_id="app-1")
    identity = await validator.validate(token)
    assert identity.kind == "managed_identity"
    assert identity.object_id == "oid-1" and identity.subject == "oid-1"
    assert identity.app_id == "app-1"
    assert identity.tenant_id == session_issuer.tenant_id
    assert identity.issuer == session_issuer.issuer
    assert identity.audience == VAULT
    assert identity.roles == {"Secrets.Read"}
    assert identity.scopes == frozenset()
    assert identity.mi_resource_id and identity.mi_resource_id.endswith("/tokenguard-vm")
    assert identity.claims["ver"] == "1.0"
    with pytest.raises(TypeError):
        identity.claims["oid"] = "x"  # type: ignore[index]


async def test_audience_list_and_matched_audience(session_issuer: LocalIssuer) -> None:
    validator = session_issuer.validator([VAULT, "api://other"])
    identity = await validator.validate(
        session_issuer.mint(["api://nope", "api://other"], roles=ROLE)
    )
    assert identity.audience == "api://other"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"aud": "https://storage.azure.com/"}, "wrong_audience"),
        ({"aud": ["a", "b"]}, "wrong_audience"),
        ({"aud": []}, "wrong_audience"),
        ({"aud": None}, "missing_claim"),
        ({"aud": 7}, "invalid_claim"),
        ({"aud": [VAULT, 7]}, "invalid_claim"),
        ({"aud": VAULT.upper()}, "wrong_audience"),
        ({"exp": None}, "missing_claim"),
        ({"exp": "9999999999"}, "invalid_claim"),
        ({"exp": True}, "invalid_claim"),
        ({"exp": [1]}, "invalid_claim"),
        ({"nbf": "0"}, "invalid_claim"),
        ({"iat": "0"}, "invalid_claim"),
        ({"iss": None}, "missing_claim"),
        ({"iss": 5}, "malformed"),
        ({"nonce": "abc"}, "wrong_type"),
        ({"at_hash": "abc"}, "wrong_type"),
    ],
)
async def test_claim_faults(
    session_issuer: LocalIssuer, validator: TokenValidator, claims: dict[str, Any], expected: str
) -> None:
    assert await reason(validator, session_issuer.mint(VAULT, claims=claims)) == expected


async def test_claims_need_no_iat_or_nbf(
    session_issuer: LocalIssuer, validator: TokenValidator
) -> None:
    token = session_issuer.mint(VAULT, roles=ROLE, claims={"iat": None, "nbf": None})
    identity = await validator.validate(token)
    assert identity.not_before is None


@pytest.mark.parametrize(
    ("offset", "claim", "valid"),
    [
        (-59, "exp", True),
        (-60, "exp", False),
        (59, "nbf", True),
        (61, "nbf", False),
        (59, "iat", True),
        (61, "iat", False),
    ],
)
async def test_time_claims_and_leeway_edges(
    session_issuer: LocalIssuer, claim: str, offset: int, valid: bool
) -> None:
    now = 2_000_000_000.0
    validator = session_issuer.validator(VAULT, clock=FakeClock(now))
    claims: dict[str, Any] = {"iat": now - 10, "nbf": now - 10, "exp": now + 3600}
    claims[claim] = now + offset
    token = session_issuer.mint(VAULT, roles=ROLE, claims=claims)
    if valid:
        assert await validator.validate(token)
    else:
        expected = {"exp": "expired", "nbf": "not_yet_valid", "iat": "issued_in_future"}[claim]
        assert await reason(validator, token) == expected


@pytest.mark.parametrize("leeway", [60, 30.5])
async def test_times_beyond_float_range(session_issuer: LocalIssuer, leeway: float) -> None:
    # 10**400 is valid JSON and within the integer digit limit, but not a float: neither
    # the checks (with an int or a float leeway) nor the cache window may overflow. A
    # far-future exp is accepted, as NumericDate allows.
    validator = session_issuer.validator(VAULT, leeway=leeway)
    token = session_issuer.mint(VAULT, roles=ROLE, claims={"exp": 10**400})
    assert await validator.validate(token)
    assert validator.cached(token) is not None
    late = session_issuer.mint(VAULT, roles=ROLE, claims={"nbf": 10**400})
    assert await reason(validator, late) == "not_yet_valid"
    future = session_issuer.mint(VAULT, roles=ROLE, claims={"iat": 10**400})
    assert await reason(validator, future) == "issued_in_future"
    for claim in ("nbf", "iat"):  # the far past is fine
        assert await validator.validate(
            session_issuer.mint(VAULT, roles=ROLE, claims={claim: -(10**400)})
        )
    expired = session_issuer.mint(VAULT, roles=ROLE, claims={"exp": -(10**400)})
    assert await reason(validator, expired) == "expired"


async def test_cache_hit_rechecks_expiry(session_issuer: LocalIssuer) -> None:
    clock = FakeClock(2_000_000_000.0)
    validator = session_issuer.validator(VAULT, clock=clock)
    token = session_issuer.mint(VAULT, roles=ROLE, issued_at=clock.now, lifetime=100)
    assert await validator.validate(token)
    assert validator.cached(token) is not None
    clock.now += 159
    assert validator.cached(token) is not None
    clock.now += 1
    assert validator.cached(token) is None
    assert await reason(validator, token) == "expired"


async def test_cache_hit_rechecks_not_before(session_issuer: LocalIssuer) -> None:
    clock = FakeClock(2_000_000_000.0)
    validator = session_issuer.validator(VAULT, clock=clock)
    token = session_issuer.mint(
        VAULT, roles=ROLE, issued_at=clock.now, claims={"nbf": clock.now + 30}
    )
    assert await validator.validate(token)
    clock.now -= 100  # the clock stepped back
    assert validator.cached(token) is None
    assert await reason(validator, token) == "not_yet_valid"


async def test_cache_is_bounded(session_issuer: LocalIssuer) -> None:
    validator = session_issuer.validator(VAULT, cache_size=2)
    tokens = [session_issuer.mint(roles=ROLE) for _ in range(3)]
    for token in tokens:
        await validator.validate(token)
    assert len(validator.cache) == 2
    assert validator.cached(tokens[0]) is None
    assert validator.cached(tokens[2]) is not None
    disabled = session_issuer.validator(VAULT, cache_size=0)
    await disabled.validate(tokens[0])
    assert disabled.cached(tokens[0]) is None
    with pytest.raises(ValueError):
        session_issuer.validator(VAULT, cache_size=-1)


async def test_signature_faults(session_issuer: LocalIssuer, validator: TokenValidator) -> None:
    token = session_issuer.mint()
    head, payload, sig = token.split(".")
    assert await reason(validator, session_issuer.forge()) == "bad_signature"
    other = json.dumps({**session_issuer.claims(), "roles": ["Admin"]}).encode()
    assert await reason(validator, f"{head}.{b64(other)}.{sig}") == "bad_signature"
    assert await reason(validator, f"{head}.{payload}.{b64(bytes(256))}") == "bad_signature"
    assert await reason(validator, f"{head}.{payload}.{b64(b'x')}") == "bad_signature"
    assert await reason(validator, f"{head}.{payload}.") == "malformed"


@pytest.mark.parametrize(
    "alg", ["none", "None", "NONE", "nOnE", "HS256", "HS512", "RS384", "PS256", "ES256"]
)
async def test_algorithms_come_from_configuration(
    session_issuer: LocalIssuer, validator: TokenValidator, alg: str
) -> None:
    header = b64(json.dumps({"alg": alg, "kid": session_issuer.signing_kid, "typ": "JWT"}).encode())
    payload = b64(json.dumps(session_issuer.claims()).encode())
    assert await reason(validator, f"{header}.{payload}.{b64(b'sig')}") == "algorithm_not_allowed"


async def test_hmac_keyed_with_the_public_key_is_refused(
    session_issuer: LocalIssuer, validator: TokenValidator
) -> None:
    pem = session_issuer.signing_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "kid": session_issuer.signing_kid}).encode())
    payload = b64(json.dumps(session_issuer.claims()).encode())
    mac = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert await reason(validator, f"{header}.{payload}.{b64(mac)}") == "algorithm_not_allowed"


async def test_key_binding_refuses_an_allowed_algorithm_of_another_key_type(
    session_issuer: LocalIssuer,
) -> None:
    validator = session_issuer.validator(VAULT, algorithms=("RS256", "ES256"))
    header = b64(json.dumps({"alg": "ES256", "kid": session_issuer.signing_kid}).encode())
    payload = b64(json.dumps(session_issuer.claims()).encode())
    assert (
        await reason(validator, f"{header}.{payload}.{b64(bytes(64))}") == "algorithm_not_allowed"
    )


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"alg": None}, "malformed"),
        ({"alg": 1}, "malformed"),
        ({"kid": None}, "unknown_key"),
        ({"kid": 1}, "malformed"),
        ({"kid": ["a"]}, "malformed"),
        ({"kid": ""}, "unknown_key"),
        ({"kid": "k" * 300}, "unknown_key"),
        ({"kid": "../../etc/passwd"}, "unknown_key"),
        ({"kid": "' OR 1=1 --"}, "unknown_key"),
        ({"crit": ["exp"]}, "unsupported_critical"),
        ({"crit": []}, "unsupported_critical"),
        ({"b64": False}, "malformed"),
        ({"zip": "DEF"}, "malformed"),
        ({"enc": "A256GCM"}, "malformed"),
    ],
)
async def test_header_faults(
    session_issuer: LocalIssuer, validator: TokenValidator, headers: dict[str, Any], expected: str
) -> None:
    await validator.warm_up()
    assert await reason(validator, session_issuer.mint(headers=headers)) == expected


async def test_header_key_sources_are_never_used(session_issuer: LocalIssuer) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return session_issuer.handler(request)

    validator = TokenValidator(
        [session_issuer.issuer_config(VAULT)],
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    attacker = LocalIssuer()
    jwk = attacker.signing_key.public_jwk
    token = attacker.mint(
        headers={
            "kid": session_issuer.signing_kid,
            "jku": "https://evil.example/jwks",
            "x5u": "https://evil.example/cert",
            "jwk": jwk,
            "x5c": jwk["x5c"],
        },
        claims={"iss": session_issuer.issuer},
    )
    assert await reason(validator, token) == "bad_signature"
    assert {r.url.host for r in requests} == {"login.tokenguard.test"}


@pytest.mark.parametrize(
    "iss",
    [
        "https://sts.windows.net/{tid}",
        "https://sts.windows.net/{tid}//",
        "https://STS.windows.net/{tid}/",
        "https://sts.windows.net/{tid}/x",
        "https://sts.windows.net.evil.example/{tid}/",
        "http://sts.windows.net/{tid}/",
        " https://sts.windows.net/{tid}/",
    ],
)
async def test_issuer_is_an_exact_match(
    session_issuer: LocalIssuer, validator: TokenValidator, iss: str
) -> None:
    claims = {"iss": iss.format(tid=session_issuer.tenant_id)}
    assert await reason(validator, session_issuer.mint(claims=claims)) == "wrong_issuer"


async def test_tenant_template_and_allow_list() -> None:
    multi = LocalIssuer(issuer="https://login.microsoftonline.com/{tenantid}/v2.0")
    allowed = "11111111-1111-1111-1111-111111111111"
    validator = multi.validator(VAULT, tenants=[allowed.upper()])
    identity = await validator.validate(multi.mint(roles=ROLE, tenant_id=allowed, version="2.0"))
    assert identity.tenant_id == allowed
    assert identity.issuer == f"https://login.microsoftonline.com/{allowed}/v2.0"
    assert identity.app_id and identity.kind == "managed_identity"
    other = "22222222-2222-2222-2222-222222222222"
    assert await reason(validator, multi.mint(roles=ROLE, tenant_id=other)) == "wrong_tenant"
    # the tid claim must fill the template: a token of one tenant naming another is refused
    mismatched = multi.mint(roles=ROLE, tenant_id=allowed, claims={"tid": other})
    assert await reason(validator, mismatched) == "wrong_issuer"
    assert (
        await reason(validator, multi.mint(roles=ROLE, tenant_id=allowed, claims={"tid": None}))
        == "wrong_issuer"
    )
    weird = multi.mint(
        roles=ROLE, claims={"tid": "a/b", "iss": "https://login.microsoftonline.com/a/b/v2.0"}
    )
    assert await reason(validator, weird) == "wrong_issuer"
    open_validator = multi.validator(VAULT)
    assert await open_validator.validate(multi.mint(roles=ROLE, tenant_id=other))


async def test_several_issuers_each_use_their_own_keys() -> None:
    one, two = LocalIssuer(), LocalIssuer()
    validator = validator_of(VAULT, one, two)
    assert (await validator.validate(one.mint(roles=ROLE))).issuer == one.issuer
    assert (await validator.validate(two.mint(roles=ROLE))).issuer == two.issuer
    # issuer two's claims signed with issuer one's key: the kid is unknown to issuer two
    crossed = one.mint(roles=ROLE, claims={"iss": two.issuer})
    assert await reason(validator, crossed) == "unknown_key"
    assert len(validator.issuers) == 2


@pytest.mark.parametrize(
    ("typ", "valid"),
    [("at+jwt", True), ("application/at+JWT", True), ("JWT", False), (None, False)],
)
async def test_token_type_profile(typ: str | None, valid: bool) -> None:
    oidc = LocalIssuer(issuer="https://keycloak.example/realms/demo")
    validator = oidc.validator("api", token_types=("at+jwt",))
    token = oidc.mint("api", roles=ROLE, headers={"typ": typ})
    if valid:
        assert await validator.validate(token)
    else:
        assert await reason(validator, token) == "wrong_type"


async def test_required_claims(session_issuer: LocalIssuer) -> None:
    validator = session_issuer.validator(VAULT, required_claims=("xms_mirid",))
    assert await validator.validate(session_issuer.mint(roles=ROLE, kind="managed_identity"))
    assert await reason(validator, session_issuer.mint(roles=ROLE, kind="app")) == "missing_claim"


async def test_id_tokens_may_be_allowed(session_issuer: LocalIssuer) -> None:
    validator = session_issuer.validator(VAULT, reject_id_tokens=False)
    assert await validator.validate(session_issuer.mint(roles=ROLE, claims={"nonce": "n"}))


@pytest.mark.parametrize("kty", ["EC", "OKP"])
async def test_ec_and_eddsa_issuers(kty: str) -> None:
    issuer = LocalIssuer(key_type=kty)  # type: ignore[arg-type]
    validator = issuer.validator(VAULT)
    assert (await validator.validate(issuer.mint(roles=ROLE))).kind == "managed_identity"
    assert await reason(validator, issuer.forge()) == "bad_signature"


async def test_oversize_token_is_refused_before_decoding(validator: TokenValidator) -> None:
    assert await reason(validator, "a" * 20_000) == "token_too_large"
    assert validator.cached("a" * 20_000) is None
    with pytest.raises(ValueError):
        TokenValidator(
            [Issuer(issuer="i", audiences=["a"], jwks_uri="https://x/k")], max_token_bytes=10
        )


async def test_rejections_are_logged_without_the_token(
    session_issuer: LocalIssuer, validator: TokenValidator, caplog: pytest.LogCaptureFixture
) -> None:
    token = session_issuer.forge()
    with caplog.at_level(logging.INFO, logger="tokenguard"), pytest.raises(InvalidToken) as info:
        await validator.validate(token)
    record = next(r for r in caplog.records if r.getMessage().startswith("request rejected"))
    assert record.reason == "bad_signature"  # type: ignore[attr-defined]
    assert record.issuer == session_issuer.issuer  # type: ignore[attr-defined]
    assert record.kid == session_issuer.signing_kid  # type: ignore[attr-defined]
    assert record.fingerprint == info.value.fingerprint  # type: ignore[attr-defined]
    assert len(info.value.fingerprint or "") == 12
    for part in token.split("."):
        assert part not in caplog.text
        assert part not in str(info.value)


async def test_logged_kid_is_escaped(
    session_issuer: LocalIssuer, validator: TokenValidator, caplog: pytest.LogCaptureFixture
) -> None:
    await validator.warm_up()
    with caplog.at_level(logging.INFO, logger="tokenguard"), pytest.raises(InvalidToken):
        await validator.validate(
            session_issuer.mint(headers={"kid": "evil\nFAKE LOG LINE" + "x" * 100})
        )
    record = next(r for r in caplog.records if r.getMessage().startswith("request rejected"))
    assert "\n" not in record.getMessage()
    assert record.kid == "evil\\nFAKE LOG LINE" + "x" * 46  # type: ignore[attr-defined]


async def test_observer_sees_every_outcome(session_issuer: LocalIssuer) -> None:
    recorder = RecordingObserver()
    validator = session_issuer.validator(VAULT, observer=recorder)
    token = session_issuer.mint(roles=ROLE)
    await validator.validate(token)
    await validator.validate(token)
    assert validator.cached(token)
    with pytest.raises(InvalidToken):
        await validator.validate(session_issuer.forge())
    with pytest.raises(InvalidToken):
        await validator.validate("a" * (validator.max_token_bytes + 1))
    iss = session_issuer.issuer
    assert recorder.validations == [
        ("valid", None, iss, False),
        ("valid", None, iss, True),
        ("valid", None, iss, True),
        ("invalid", "bad_signature", iss, False),
        ("invalid", "token_too_large", None, False),
    ]
    assert recorder.fetches == [(iss, "discovery", "ok"), (iss, "jwks", "ok")]


async def test_validator_owns_and_closes_its_client() -> None:
    config = Issuer(
        issuer="i", audiences=["a"], jwks_uri="http://127.0.0.1:9/keys", fetch_timeout=0.5
    )
    async with TokenValidator([config]) as validator:
        with pytest.raises(KeysUnavailable):
            await validator.warm_up()
        client = validator._http_client
        assert client is not None
    assert client.is_closed
    shared = httpx.AsyncClient()
    validator = TokenValidator([config], http_client=shared)
    await validator.aclose()
    assert not shared.is_closed
    await shared.aclose()


def test_validator_configuration_errors() -> None:
    config = Issuer(issuer="i", audiences=["a"], jwks_uri="https://x/k")
    with pytest.raises(ValueError, match="at least one"):
        TokenValidator([])
    with pytest.raises(ValueError, match="once"):
        TokenValidator([config, config])


async def test_non_latin1_text_is_malformed_and_never_cached(validator: TokenValidator) -> None:
    token = "€" + "a.b.c"
    assert validator.cached(token) is None
    assert await reason(validator, token) == "malformed"
    assert validator.cached(token.encode()) is None


async def test_claims_are_decoded_from_the_token_on_first_use(
    session_issuer: LocalIssuer, validator: TokenValidator
) -> None:
    token = session_issuer.mint(roles=["R"], object_id="oid-7")
    identity = await validator.validate(token)
    claims = identity.claims
    assert claims["oid"] == "oid-7"
    assert dict(claims) == json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert len(claims) == len(dict(claims))
    assert "TokenClaims({" in repr(claims)
    assert (await validator.validate(token)).claims is claims  # the cached identity


async def test_header_memo_stays_bounded_across_rotations() -> None:
    issuer = LocalIssuer()
    validator = issuer.validator(VAULT)
    for _ in range(3):
        issuer.rotate()
    kids = list(issuer.keys)
    for i in range(70):  # 70 distinct headers, four keys
        token = issuer.mint(roles=ROLE, kid=kids[i % 4], headers={"x-n": i})
        assert await validator.validate(token)
    assert 0 < len(validator._headers) <= 64
    assert await validator.validate(issuer.mint(roles=ROLE, kid=kids[0], headers={"x-n": 0}))


async def test_one_issuer_refuses_unknown_kids_before_decoding_claims(
    session_issuer: LocalIssuer, validator: TokenValidator
) -> None:
    await validator.warm_up()
    header = b64(json.dumps({"alg": "RS256", "kid": "nobody-knows"}).encode())
    garbage_payload = b64(b"{not json at all")
    # The payload is never decoded: the kid alone settles it.
    token = f"{header}.{garbage_payload}.{b64(bytes(256))}"
    assert await reason(validator, token) == "unknown_key"
    # With several issuers the payload's iss picks the key set, so it is decoded first.
    both = validator_of(VAULT, session_issuer, LocalIssuer())
    assert await reason(both, token) == "malformed"


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"roles": []},
        {"roles": ""},
        {"roles": [""]},
        {"roles": [1, None, {"r": 1}]},
        {"roles": {"Admin": True}},
        {"scp": ""},
        {"scp": "   "},
        {"scp": 5},
        {"scp": [""]},
        {"scope": ""},
        {"scope": ["", 7]},
        # scp, when present, is what Identity reads: junk there hides a scope claim
        {"scp": 5, "scope": "read"},
    ],
)
async def test_a_token_that_grants_nothing_is_refused(
    session_issuer: LocalIssuer, validator: TokenValidator, claims: dict[str, Any]
) -> None:
    token = session_issuer.mint(VAULT, claims=claims)
    assert await reason(validator, token) == "no_permissions"
    assert validator.cached(token) is None
    relaxed = session_issuer.validator(VAULT, require_roles_or_scopes=False)
    identity = await relaxed.validate(token)
    assert identity.permissions == frozenset()


@pytest.mark.parametrize(
    ("claims", "permissions"),
    [
        ({"roles": ["Secrets.Read"]}, {"Secrets.Read"}),
        ({"roles": "Secrets.Read"}, {"Secrets.Read"}),
        ({"roles": ["", "Secrets.Read", 3]}, {"Secrets.Read"}),
        ({"scp": "a  b"}, {"a", "b"}),
        ({"scp": ["a"]}, {"a"}),
        ({"scope": "read write"}, {"read", "write"}),  # RFC 9068
        ({"roles": [], "scope": "read"}, {"read"}),
    ],
)
async def test_a_token_that_grants_something_passes(
    session_issuer: LocalIssuer,
    validator: TokenValidator,
    claims: dict[str, Any],
    permissions: set[str],
) -> None:
    identity = await validator.validate(session_issuer.mint(VAULT, claims=claims))
    assert identity.permissions == permissions
