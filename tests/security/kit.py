"""The attack kit: trusted issuers, attacker keys, raw token forging and a recording transport.

Everything an attack row needs to build its token lives here, so the catalogue reads as
a table. Tokens are forged with the standard library (``hmac``) and ``cryptography``
directly: PyJWT refuses to build most of them, which is the point.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tokenguard import Issuer, TokenValidator
from tokenguard.testing import LocalIssuer, PrivateKey

from ..helpers import FakeClock

__all__ = [
    "CONSUMERS_TENANT",
    "GENERIC_AUDIENCE",
    "NOW",
    "STORAGE",
    "TEMPLATE_AUDIENCE",
    "VAULT",
    "Kit",
    "b64",
    "compact",
    "sign_input",
]

#: Token time (wall clock) every validator and issuer of the kit agrees on.
NOW: Final = 1_750_000_000
VAULT: Final = "https://vault.azure.net"
STORAGE: Final = "https://storage.azure.com/"
GENERIC_AUDIENCE: Final = "https://api.tokenguard.test"
TEMPLATE_AUDIENCE: Final = "api://tokenguard-tests"
#: Entra's tenant of personal Microsoft accounts (the common key set mixes in its keys).
CONSUMERS_TENANT: Final = "9188040d-6c67-4c5b-b112-36a304b66dad"
#: Every algorithm the main issuer allows: key binding, not the allow-list, must stop confusion.
MAIN_ALGORITHMS: Final = ("RS256", "RS384", "PS256", "ES256", "ES384", "EdDSA")

_V = TypeVar("_V", bound=TokenValidator)

_HASH: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_HMAC = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64(data: bytes) -> str:
    """Unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def as_json(value: Mapping[str, Any] | bytes | str) -> bytes:
    """Compact JSON for a mapping; bytes and text pass through (for broken JSON)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _overridden(members: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``members`` with ``overrides`` set, each ``None`` among them removing its member."""
    for name, value in overrides.items():
        if value is None:
            members.pop(name, None)
        else:
            members[name] = value
    return members


def compact(
    header: Mapping[str, Any] | bytes | str,
    payload: Mapping[str, Any] | bytes | str,
    signature: bytes = b"",
) -> str:
    """A compact JWS from parts (the signature may be empty: stripped-signature attacks)."""
    return f"{b64(as_json(header))}.{b64(as_json(payload))}.{b64(signature)}"


def sign_input(token_without_signature: str, key: PrivateKey | bytes, alg: str) -> bytes:
    """Sign ``header.payload`` text the way ``alg`` says, with ``key`` (bytes = HMAC secret)."""
    data = token_without_signature.encode("ascii")
    if alg in _HMAC:
        assert isinstance(key, bytes)
        return hmac.new(key, data, _HMAC[alg]).digest()
    if alg == "EdDSA":
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return key.sign(data)
    hash_cls = _HASH[alg[2:]]
    if alg.startswith("RS"):
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.sign(data, padding.PKCS1v15(), hash_cls())
    if alg.startswith("PS"):
        assert isinstance(key, rsa.RSAPrivateKey)
        pss = padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=hash_cls().digest_size)
        return key.sign(data, pss, hash_cls())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.sign(data, ec.ECDSA(hash_cls()))
    r, s = decode_dss_signature(der)
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


@dataclass
class Kit:
    """Three trusted issuers, attacker keys, and a transport that records every request.

    - ``main``: Entra v1-shaped (``https://sts.windows.net/{tid}/``), keys RSA (signing),
      EC P-256 ``ec256``, EC P-384 ``ec384``, Ed25519 ``ed``, and an RSA key ``rsa-bound``
      whose JWK says ``"alg": "RS256"``; it allows RS256, RS384, PS256, ES256, ES384, EdDSA.
    - ``generic``: an RFC 9068 server whose access tokens must say ``typ: at+jwt``.
    - ``multi``: an Entra v2 multi-tenant template (``{tenantid}``) limited to two tenants,
      whose key set is shaped like Entra's common v2 set: every key names its ``issuer``
      and ``cloud_instance_name``. ``template`` signs (issuer: the template), ``consumers``
      is a personal-account key (issuer: the consumers tenant), ``us-cloud`` a
      ``microsoftonline.us`` key; the discovery document names ``microsoftonline.com``
      and the validator checks the cloud instance.
    """

    main: LocalIssuer = field(default_factory=lambda: LocalIssuer(clock=lambda: NOW))
    generic: LocalIssuer = field(
        default_factory=lambda: LocalIssuer(
            issuer="https://idp.tokenguard.test/",
            base_url="https://idp.tokenguard.test",
            clock=lambda: NOW,
        )
    )
    multi: LocalIssuer = field(
        default_factory=lambda: LocalIssuer(
            issuer="https://login.microsoftonline.test/{tenantid}/v2.0",
            base_url="https://login.microsoftonline.test",
            clock=lambda: NOW,
            cloud_instance_name="microsoftonline.com",
        )
    )
    attacker_rsa: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    attacker_ec: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    #: Every request any validator of this kit sent, in order.
    requests: list[httpx.Request] = field(default_factory=list)
    other_tenant: str = "7f1d1a42-4c2e-4a5f-9a0e-3f6f1f0d9c11"

    def __post_init__(self) -> None:
        self.main.add_key("EC", kid="ec256", curve="P-256")
        self.main.add_key("EC", kid="ec384", curve="P-384")
        self.main.add_key("OKP", kid="ed")
        self.main.add_key("RSA", kid="rsa-bound", alg="RS256")
        template, first = self.multi.issuer, self.multi.signing_kid
        self.multi.rotate(
            kid="template", issuer=template, cloud_instance_name="microsoftonline.com"
        )
        self.multi.retire(first)
        self.multi.add_key(
            kid="consumers",
            issuer=template.replace("{tenantid}", CONSUMERS_TENANT),
            cloud_instance_name="microsoftonline.com",
        )
        self.multi.add_key(
            kid="us-cloud", issuer=template, cloud_instance_name="microsoftonline.us"
        )
        self.allowed_tenants = frozenset({self.multi.tenant_id, self.other_tenant})

    # -- keys --------------------------------------------------------------------

    @property
    def rsa_kid(self) -> str:
        """The kid of the main issuer's RSA signing key."""
        return self.main.signing_kid

    def private(self, kid: str, issuer: LocalIssuer | None = None) -> PrivateKey:
        """The private key behind a published kid."""
        return (issuer or self.main).keys[kid].private_key

    def public_jwk(self, kid: str, issuer: LocalIssuer | None = None) -> dict[str, Any]:
        """The JWK exactly as the JWKS publishes it."""
        return self._published((issuer or self.main).keys[kid].public_jwk, kid)

    @staticmethod
    def _published(jwk: dict[str, Any], kid: str) -> dict[str, Any]:
        if kid == "rsa-bound":
            return {**jwk, "alg": "RS256"}
        return jwk

    # -- tokens ------------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Valid main-issuer MI claims at ``NOW``; an override of ``None`` removes a claim."""
        return _overridden(self.main.claims(VAULT, roles=["Secrets.Read"]), overrides)

    def header(self, kid: str | None = None, alg: str = "RS256", **extra: Any) -> dict[str, Any]:
        """An Entra-shaped JWS header; ``extra`` members are added (``None`` removes)."""
        return _overridden({"typ": "JWT", "alg": alg, "kid": kid or self.rsa_kid}, extra)

    def signed(
        self,
        header: Mapping[str, Any] | bytes | str | None = None,
        payload: Mapping[str, Any] | bytes | str | None = None,
        *,
        key: PrivateKey | bytes | None = None,
        alg: str | None = None,
    ) -> str:
        """A token whose signature is genuinely made over its (possibly hostile) parts.

        By default the main issuer's RSA key signs: any rejection is then down to the
        part under test, not to the signature.
        """
        header = self.header() if header is None else header
        payload = self.claims() if payload is None else payload
        if alg is None:
            alg = header["alg"] if isinstance(header, Mapping) else "RS256"
        if key is None:
            kid = header.get("kid") if isinstance(header, Mapping) else None
            key = self.private(
                kid if isinstance(kid, str) and kid in self.main.keys else self.rsa_kid
            )
        unsigned = f"{b64(as_json(header))}.{b64(as_json(payload))}"
        return f"{unsigned}.{b64(sign_input(unsigned, key, alg))}"

    def valid(self, **overrides: Any) -> str:
        """A token the main issuer really signed, with claims overridden."""
        return self.signed(payload=self.claims(**overrides))

    def resign(self, token: str, signature: bytes) -> str:
        """Replace a token's signature."""
        return token.rsplit(".", 1)[0] + "." + b64(signature)

    # -- validators ----------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Serve the three issuers' metadata; record the request first."""
        self.requests.append(request)
        for issuer in (self.main, self.generic, self.multi):
            if request.url.host != httpx.URL(issuer.base_url).host:
                continue
            response = issuer.handler(request)
            if response.status_code == 200 and request.url.path.endswith("/keys"):
                document = json.loads(response.content)
                document["keys"] = [self._published(k, k["kid"]) for k in document["keys"]]
                return httpx.Response(200, json=document, headers={"cache-control": "max-age=3600"})
            return response
        return httpx.Response(404, json={"error": "not_found"})

    def issuers(self) -> list[Issuer]:
        """The validator configuration: every trusted issuer."""
        return [
            self.main.issuer_config((VAULT, STORAGE), algorithms=MAIN_ALGORITHMS),
            self.generic.issuer_config(GENERIC_AUDIENCE, token_types=("at+jwt",)),
            self.multi.issuer_config(
                TEMPLATE_AUDIENCE, tenants=self.allowed_tenants, validate_cloud_instance=True
            ),
        ]

    def validator(self, **options: Any) -> TokenValidator:
        """A fresh validator whose every outbound request lands in :attr:`requests`."""
        return self.make_validator(TokenValidator, **options)

    def make_validator(self, cls: type[_V], **options: Any) -> _V:
        """Like :meth:`validator`, for a ``TokenValidator`` subclass."""
        options.setdefault("clock", lambda: float(NOW))
        options.setdefault("monotonic", FakeClock(10_000.0))
        client = httpx.AsyncClient(transport=httpx.MockTransport(self.handler))
        return cls(self.issuers(), http_client=client, **options)

    def metadata_urls(self) -> frozenset[str]:
        """The only URLs a validator of this kit may ever request."""
        return frozenset(
            url
            for issuer in (self.main, self.generic, self.multi)
            for url in (issuer.discovery_url, issuer.jwks_uri)
        )

    def stray_requests(self) -> list[str]:
        """Recorded requests to anything but the trusted issuers' metadata URLs."""
        allowed = self.metadata_urls()
        return [str(r.url) for r in self.requests if str(r.url) not in allowed]
