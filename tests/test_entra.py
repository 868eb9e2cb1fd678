"""Entra's signing-key rules against Entra's real metadata (tests/data/entra/README.md).

The key sets and discovery documents are Entra's own, member for member. Real keys
cannot sign, so the signing tests swap each key's ``n``/``e`` for a key of ours and keep
every other member (``kid``, ``x5t``, ``x5c``, ``issuer``, ``cloud_instance_name``) as
Entra publishes it. Everything is served by an ``httpx.MockTransport`` at Entra's URLs:
nothing leaves the process.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tokenguard import InvalidToken, Issuer, TokenGuardMiddleware, TokenValidator, get_identity
from tokenguard._keys import load_jwks
from tokenguard.testing import encode_jws

from .helpers import bearer

pytestmark = pytest.mark.anyio

DATA: Final = Path(__file__).parent / "data" / "entra"
LOGIN: Final = "https://login.microsoftonline.com"
TEMPLATE: Final = f"{LOGIN}/{{tenantid}}/v2.0"
V1_TEMPLATE: Final = "https://sts.windows.net/{tenantid}/"
V2_DISCOVERY: Final = f"{LOGIN}/common/v2.0/.well-known/openid-configuration"
V2_KEYS: Final = f"{LOGIN}/common/discovery/v2.0/keys"
V1_DISCOVERY: Final = f"{LOGIN}/common/.well-known/openid-configuration"
V1_KEYS: Final = f"{LOGIN}/common/discovery/keys"
#: Personal Microsoft accounts: the tenant of the common set's non-template keys.
CONSUMERS: Final = "9188040d-6c67-4c5b-b112-36a304b66dad"
WORK: Final = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_WORK: Final = "c3b0f5a1-2d4e-4f60-8a7b-9e1d2c3f4a5b"
#: The API's client id: v2 tokens name it as ``aud``.
API: Final = "6e5f1a2c-3b4d-4e8f-9a0b-1c2d3e4f5a6b"
ALL_RSA: Final = frozenset({"RS256"})

# kids of the 2025 common set, by what Entra says of them
TEMPLATE_KID: Final = "PoVKeirIOvmTyLQ9G9BenBwos7k"  # template issuer, microsoftonline.com
US_KID: Final = "wf9rj3EkQvzKpxDG-mJn1gALi6U"  # template issuer, microsoftonline.us
CONSUMERS_KID: Final = "4pxhphrFjooBXV6t0JO_kpTQNl8"  # consumers tenant issuer
V1_KID: Final = "nOo3ZDrODXEK1jKWhXslHR_KXEg"


def data(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return document


def b64_int(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def rsa_numbers(public_key: object) -> rsa.RSAPublicNumbers:
    assert isinstance(public_key, rsa.RSAPublicKey)
    return public_key.public_numbers()


def certificate_numbers(jwk: dict[str, Any]) -> rsa.RSAPublicNumbers:
    """The public key of the JWK's ``x5c`` certificate."""
    der = base64.b64decode(jwk["x5c"][0])
    return rsa_numbers(x509.load_der_x509_certificate(der).public_key())


def int_b64(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def substituted(key_set: dict[str, Any]) -> tuple[dict[str, Any], dict[str, rsa.RSAPrivateKey]]:
    """The key set with every ``n``/``e`` replaced by a fresh key of ours, all else kept."""
    document = copy.deepcopy(key_set)
    private = {}
    for jwk in document["keys"]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = key.public_key().public_numbers()
        jwk["n"], jwk["e"] = b64_int(numbers.n), b64_int(numbers.e)
        private[jwk["kid"]] = key
    return document, private


@dataclass
class Entra:
    """Entra's endpoints as a mock transport, with the private halves of the swapped keys."""

    documents: dict[str, dict[str, Any]]
    private: dict[str, rsa.RSAPrivateKey]
    requested: list[str] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.requested.append(url)
        if url in self.documents:
            return httpx.Response(200, json=self.documents[url])
        return httpx.Response(404, json={"error": "not_found"})

    def validator(self, *issuers: Issuer) -> TokenValidator:
        client = httpx.AsyncClient(transport=httpx.MockTransport(self.handler))
        return TokenValidator(issuers, http_client=client)

    def token(
        self,
        kid: str,
        *,
        tid: object,
        iss: str | None = None,
        version: str = "2.0",
        **claims: Any,
    ) -> str:
        """An access token shaped like Entra's, signed with the swapped key ``kid``."""
        now = int(time.time())
        oid = str(uuid.uuid4())
        issuer = iss or (
            f"{LOGIN}/{tid}/v2.0" if version == "2.0" else f"https://sts.windows.net/{tid}/"
        )
        body: dict[str, Any] = {
            "aud": API if version == "2.0" else "https://vault.azure.net",
            "iss": issuer,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "oid": oid,
            "sub": oid,
            "idtyp": "app",
            "roles": ["Tasks.Read"],
            "tid": tid,
            "ver": version,
        }
        body.update({"azp": str(uuid.uuid4())} if version == "2.0" else {"appid": "a"})
        body.update(claims)
        body = {name: value for name, value in body.items() if value is not None}
        header = {"typ": "JWT", "alg": "RS256", "kid": kid}
        if version == "1.0":
            header["x5t"] = kid
        return encode_jws(header, body, self.private[kid])


@pytest.fixture(scope="module")
def entra() -> Entra:
    """The 2025 common v2 set and the v1 set, keys swapped, at Entra's URLs."""
    v2_keys, v2_private = substituted(data("common-v2-keys-2025.json"))
    v1_keys, v1_private = substituted(data("common-v1-keys.json"))
    return Entra(
        documents={
            V2_DISCOVERY: data("common-v2-openid-configuration.json"),
            V2_KEYS: v2_keys,
            V1_DISCOVERY: data("common-v1-openid-configuration.json"),
            V1_KEYS: v1_keys,
        },
        private={**v2_private, **v1_private},
    )


@pytest.fixture
def fresh(entra: Entra) -> Entra:
    """The module's Entra with its own request log (documents may be edited)."""
    return Entra(copy.deepcopy(entra.documents), entra.private)


def template_issuer(**options: Any) -> Issuer:
    return Issuer(issuer=TEMPLATE, audiences=[API], discovery_url=V2_DISCOVERY, **options)


async def reason(validator: TokenValidator, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        await validator.validate(token)
    assert token not in str(info.value)
    return info.value.reason


# -- the real documents ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "issuers", "clouds"),
    [
        (
            "common-v2-keys-2025.json",
            {TEMPLATE: 4, f"{LOGIN}/{CONSUMERS}/v2.0": 2},
            {"microsoftonline.com": 4, "microsoftonline.us": 2},
        ),
        ("common-v2-keys-2024.json", {TEMPLATE: 5, f"{LOGIN}/{CONSUMERS}/v2.0": 2}, {None: 7}),
        ("common-v1-keys.json", {None: 2}, {None: 2}),
    ],
)
def test_real_key_sets_load_whole_with_their_members(
    name: str, issuers: dict[str | None, int], clouds: dict[str | None, int]
) -> None:
    document = data(name)
    keys = load_jwks(document, ALL_RSA, 100)
    assert set(keys) == {jwk["kid"] for jwk in document["keys"]}
    for jwk in document["keys"]:
        key = keys[jwk["kid"]]
        assert key.issuer == jwk.get("issuer")
        assert key.cloud_instance_name == jwk.get("cloud_instance_name")
        # The key is n/e, which Entra's certificate (x5c) confirms for its real keys.
        numbers = rsa_numbers(key.public_key)
        assert (numbers.n, numbers.e) == (int_b64(jwk["n"]), int_b64(jwk["e"]))
        assert certificate_numbers(jwk) == numbers
    assert Counter(key.issuer for key in keys.values()) == issuers
    assert Counter(key.cloud_instance_name for key in keys.values()) == clouds


def test_x5c_is_never_a_key_source(entra: Entra) -> None:
    real = data("common-v2-keys-2025.json")["keys"][0]
    without_n = {name: value for name, value in real.items() if name not in ("n", "e")}
    with pytest.raises(ValueError, match="no usable signing key"):
        load_jwks({"keys": [without_n]}, ALL_RSA, 10)
    # Swapped: the key is our n/e even though x5c still holds Entra's certificate.
    swapped = load_jwks(entra.documents[V2_KEYS], ALL_RSA, 10)[real["kid"]]
    ours = entra.private[real["kid"]].public_key().public_numbers()
    assert rsa_numbers(swapped.public_key) == ours
    assert certificate_numbers(real) != ours


def test_the_global_set_holds_keys_of_another_cloud() -> None:
    document = data("common-v2-keys-2025.json")
    keys = load_jwks(document, ALL_RSA, 100, cloud_instance="microsoftonline.com")
    us = {k["kid"] for k in document["keys"] if k["cloud_instance_name"] == "microsoftonline.us"}
    assert us and US_KID in us
    assert set(keys) == {k["kid"] for k in document["keys"]} - us


def test_real_discovery_documents_name_the_template_and_the_cloud() -> None:
    v2 = data("common-v2-openid-configuration.json")
    assert (v2["issuer"], v2["jwks_uri"]) == (TEMPLATE, V2_KEYS)
    v1 = data("common-v1-openid-configuration.json")
    assert (v1["issuer"], v1["jwks_uri"]) == (V1_TEMPLATE, V1_KEYS)
    assert v1["cloud_instance_name"] == v2["cloud_instance_name"] == "microsoftonline.com"


# -- key issuer (IDX40005) ------------------------------------------------------------


async def test_work_token_signed_by_a_template_key_is_accepted(fresh: Entra) -> None:
    validator = fresh.validator(template_issuer())
    identity = await validator.validate(fresh.token(TEMPLATE_KID, tid=WORK))
    assert (identity.tenant_id, identity.issuer) == (WORK, f"{LOGIN}/{WORK}/v2.0")
    assert fresh.requested == [V2_DISCOVERY, V2_KEYS]
    await validator.aclose()


async def test_work_token_signed_by_a_consumers_key_is_refused(fresh: Entra) -> None:
    validator = fresh.validator(template_issuer())
    forged = fresh.token(CONSUMERS_KID, tid=WORK)
    assert await reason(validator, forged) == "key_issuer_mismatch"
    assert validator.cached(forged) is None
    # Personal accounts' own tokens are what that key signs.
    personal = await validator.validate(fresh.token(CONSUMERS_KID, tid=CONSUMERS))
    assert personal.issuer == f"{LOGIN}/{CONSUMERS}/v2.0"
    lax = fresh.validator(template_issuer(validate_key_issuer=False))
    assert (await lax.validate(forged)).tenant_id == WORK
    await validator.aclose()
    await lax.aclose()


async def test_multi_tenant_template_with_an_allow_list(fresh: Entra) -> None:
    validator = fresh.validator(template_issuer(tenants=[WORK, OTHER_WORK]))
    for tenant in (WORK, OTHER_WORK):
        assert (await validator.validate(fresh.token(TEMPLATE_KID, tid=tenant))).tenant_id == tenant
    personal = fresh.token(CONSUMERS_KID, tid=CONSUMERS)
    assert await reason(validator, personal) == "wrong_tenant"
    assert await reason(validator, fresh.token(CONSUMERS_KID, tid=WORK)) == "key_issuer_mismatch"
    await validator.aclose()


async def test_a_template_issuer_and_the_consumers_tenant_in_one_validator(fresh: Entra) -> None:
    validator = fresh.validator(
        template_issuer(tenants=[WORK]),
        Issuer(issuer=f"{LOGIN}/{CONSUMERS}/v2.0", audiences=[API], jwks_uri=V2_KEYS),
    )
    work = await validator.validate(fresh.token(TEMPLATE_KID, tid=WORK))
    personal = await validator.validate(fresh.token(CONSUMERS_KID, tid=CONSUMERS))
    assert (work.tenant_id, personal.tenant_id) == (WORK, CONSUMERS)
    assert await reason(validator, fresh.token(CONSUMERS_KID, tid=WORK)) == "key_issuer_mismatch"
    # A template key signs for every tenant, the consumers tenant included (as Entra's).
    assert await validator.validate(fresh.token(TEMPLATE_KID, tid=CONSUMERS))
    # Each issuer keeps its own keys: discovery and keys for the template, keys for the
    # consumers tenant (configured with jwks_uri).
    assert sorted(fresh.requested) == sorted([V2_DISCOVERY, V2_KEYS, V2_KEYS])
    await validator.aclose()


@pytest.mark.parametrize(
    ("tid", "expected"),
    [
        (None, "missing_claim"),
        ("../x", "invalid_claim"),
        ([WORK], "invalid_claim"),
        (OTHER_WORK, "key_issuer_mismatch"),
    ],
)
async def test_a_template_key_fills_in_the_tokens_tid(
    fresh: Entra, tid: object, expected: str
) -> None:
    # One tenant's exact issuer over the common keys: iss matches the configuration, so
    # only the key's issuer, with the token's tid in it, can catch a missing or wrong tid.
    validator = fresh.validator(
        Issuer(issuer=f"{LOGIN}/{WORK}/v2.0", audiences=[API], jwks_uri=V2_KEYS)
    )
    assert await validator.validate(fresh.token(TEMPLATE_KID, tid=WORK))
    token = fresh.token(TEMPLATE_KID, tid=tid, iss=f"{LOGIN}/{WORK}/v2.0")
    assert await reason(validator, token) == expected
    await validator.aclose()


async def test_v1_keys_carry_no_issuer_and_bind_nothing(fresh: Entra) -> None:
    v1 = Issuer(
        issuer=V1_TEMPLATE, audiences=["https://vault.azure.net"], discovery_url=V1_DISCOVERY
    )
    validator = fresh.validator(v1)
    identity = await validator.validate(fresh.token(V1_KID, tid=WORK, version="1.0"))
    assert identity.issuer == f"https://sts.windows.net/{WORK}/"
    await validator.aclose()


async def test_a_v1_issuer_pointed_at_the_v2_set_fails_the_key_issuer_check(fresh: Entra) -> None:
    # Documented: v1 tokens are checked against the v1 set, whose keys name no issuer.
    options: dict[str, Any] = {
        "issuer": V1_TEMPLATE,
        "audiences": ["https://vault.azure.net"],
        "jwks_uri": V2_KEYS,
    }
    token = fresh.token(TEMPLATE_KID, tid=WORK, version="1.0")
    strict = fresh.validator(Issuer(**options))
    assert await reason(strict, token) == "key_issuer_mismatch"
    lax = fresh.validator(Issuer(**options, validate_key_issuer=False))
    assert await lax.validate(token)
    await strict.aclose()
    await lax.aclose()


# -- cloud instance (IDX40012) --------------------------------------------------------


async def test_keys_of_another_cloud_verify_unless_the_cloud_is_checked(fresh: Entra) -> None:
    us_token = fresh.token(US_KID, tid=WORK)
    unchecked = fresh.validator(template_issuer())
    assert await unchecked.validate(us_token)
    checked = fresh.validator(template_issuer(validate_cloud_instance=True))
    assert await checked.validate(fresh.token(TEMPLATE_KID, tid=WORK))
    assert await reason(checked, us_token) == "unknown_key"
    (status,) = checked.status()
    assert status.key_count == 4 and US_KID not in status.kids and TEMPLATE_KID in status.kids
    await unchecked.aclose()
    await checked.aclose()


async def test_a_discovery_document_without_a_cloud_checks_nothing(
    fresh: Entra, caplog: pytest.LogCaptureFixture
) -> None:
    del fresh.documents[V2_DISCOVERY]["cloud_instance_name"]
    validator = fresh.validator(template_issuer(validate_cloud_instance=True))
    with caplog.at_level(logging.WARNING, logger="tokenguard"):
        assert await validator.validate(fresh.token(US_KID, tid=WORK))
    messages = [r.getMessage() for r in caplog.records]
    assert "discovery document names no cloud_instance_name; keys are not checked" in messages
    await validator.aclose()


# -- through the middleware -----------------------------------------------------------


async def whoami(request: Request) -> JSONResponse:
    identity = get_identity(request)
    assert identity is not None
    return JSONResponse({"tenant": identity.tenant_id, "permissions": sorted(identity.permissions)})


def test_middleware_answers_entra_tokens(fresh: Entra) -> None:
    validator = fresh.validator(
        template_issuer(tenants=[WORK]),
        Issuer(issuer=f"{LOGIN}/{CONSUMERS}/v2.0", audiences=[API], jwks_uri=V2_KEYS),
    )
    app = Starlette(
        routes=[Route("/", whoami)],
        middleware=[Middleware(TokenGuardMiddleware, validator=validator)],
    )
    work = fresh.token(TEMPLATE_KID, tid=WORK)
    delegated = fresh.token(TEMPLATE_KID, tid=WORK, roles=None, scp="Tasks.Read Tasks.Write")
    personal = fresh.token(CONSUMERS_KID, tid=CONSUMERS, roles=None, scp="Tasks.Read")
    forged = fresh.token(CONSUMERS_KID, tid=WORK)
    nothing = fresh.token(TEMPLATE_KID, tid=WORK, roles=None)
    with TestClient(app) as client:
        assert client.get("/", headers=bearer(work)).json() == {
            "tenant": WORK,
            "permissions": ["Tasks.Read"],
        }
        assert client.get("/", headers=bearer(delegated)).json()["permissions"] == [
            "Tasks.Read",
            "Tasks.Write",
        ]
        assert client.get("/", headers=bearer(personal)).json()["tenant"] == CONSUMERS
        refused = client.get("/", headers=bearer(forged))
        assert refused.status_code == 401
        assert refused.json() == {
            "error": "invalid_token",
            "error_description": "The token issuer does not match its signing key",
        }
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        empty = client.get("/", headers=bearer(nothing))
        assert empty.status_code == 401
        assert empty.json()["error_description"] == "The token carries neither roles nor scopes"
