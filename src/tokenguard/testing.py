"""Test helpers: a local issuer that mints Entra-shaped tokens with its own keys.

    issuer = LocalIssuer()
    validator = issuer.validator(audiences=["https://vault.azure.net"])
    token = issuer.mint("https://vault.azure.net", roles=["Secrets.Read"])
    identity = await validator.validate(token)

The issuer serves its discovery document and JWKS as an ``httpx.MockTransport``
(:meth:`LocalIssuer.transport`) and as an ASGI app (:meth:`LocalIssuer.asgi_app`),
counts every fetch in :attr:`LocalIssuer.hits`, and rotates keys.

Tokens are shaped like Entra's: a managed-identity or app token minted without
``roles`` carries neither ``roles`` nor ``scp`` (as real managed-identity tokens for
Key Vault or Storage do), and a validator refuses it (``no_permissions``) unless its
issuer says ``require_roles_or_scopes=False``; pass that to :meth:`LocalIssuer.validator`
or :meth:`LocalIssuer.issuer_config` when the API authorizes by object id. A ``user``
token always has ``scp`` (``user_impersonation`` when no scopes are given). JWKS keys
carry Entra v2's ``issuer`` and ``cloud_instance_name`` members only when
:meth:`LocalIssuer.add_key` is given them (v1-shaped otherwise), and the discovery
document names a ``cloud_instance_name`` only when the issuer is built with one.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._algorithms import ALGORITHMS
from ._config import Issuer
from ._identity import IdentityKind
from ._validator import TokenValidator

__all__ = [
    "KeyType",
    "LocalIssuer",
    "SigningKey",
    "encode_jws",
    "generate_key",
    "self_signed_certificate",
]

KeyType = Literal["RSA", "EC", "OKP"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_DEFAULT_ALG = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}
_CURVE_ALG = {a.crv: a.name for a in ALGORITHMS.values() if a.crv is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def generate_key(kty: KeyType = "RSA", *, bits: int = 2048, curve: str = "P-256") -> PrivateKey:
    """A fresh private key of the given type."""
    if kty == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if kty == "EC":
        return ec.generate_private_key(_CURVES[curve]())
    return ed25519.Ed25519PrivateKey.generate()


@dataclass
class SigningKey:
    """A key of the local issuer: the private half, its kid, certificate and JWK."""

    kid: str
    alg: str
    private_key: PrivateKey
    published: bool = True
    #: The key's certificate (the JWK's ``x5c``); a self-signed one when not given.
    certificate: x509.Certificate | None = None
    #: The JWK's ``issuer`` member (Entra v2 key sets), left out when ``None``.
    issuer: str | None = None
    #: The JWK's ``cloud_instance_name`` member, left out when ``None``.
    cloud_instance_name: str | None = None

    def __post_init__(self) -> None:
        if self.certificate is None:
            self.certificate = self_signed_certificate(
                self.private_key, f"tokenguard test key {self.kid}"
            )

    @property
    def public_jwk(self) -> dict[str, Any]:
        """The public JWK, shaped like Entra's (``kty, use, kid, x5t, n, e, x5c``)."""
        public = self.private_key.public_key()
        jwk: dict[str, Any]
        if isinstance(public, rsa.RSAPublicKey):
            jwk = json.loads(RSAAlgorithm.to_jwk(public))
        elif isinstance(public, ec.EllipticCurvePublicKey):
            jwk = json.loads(ECAlgorithm.to_jwk(public))
        else:
            jwk = json.loads(OKPAlgorithm.to_jwk(public))
        jwk.pop("key_ops", None)  # PyJWT adds it; Entra's keys do not carry it
        assert self.certificate is not None  # set in __post_init__
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        x5t = _b64(hashlib.sha1(der).digest())  # noqa: S324 - x5t is SHA-1 by definition
        ordered = {"kty": jwk.pop("kty"), "use": "sig", "kid": self.kid, "x5t": x5t}
        ordered.update(jwk)
        ordered["x5c"] = [base64.b64encode(der).decode("ascii")]
        if self.cloud_instance_name is not None:
            ordered["cloud_instance_name"] = self.cloud_instance_name
        if self.issuer is not None:
            ordered["issuer"] = self.issuer
        return ordered


def self_signed_certificate(
    key: PrivateKey,
    common_name: str,
    *,
    not_before: dt.datetime | None = None,
    days: int = 365,
) -> x509.Certificate:
    """A self-signed certificate for ``key`` (what an issuer's JWK puts in ``x5c``)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .sign(key, algorithm)
    )


def encode_jws(
    header: Mapping[str, Any], claims: object, key: PrivateKey, *, algorithm: str | None = None
) -> str:
    """Sign a compact JWS as given: no claim checks, so tests can build odd tokens.

    ``claims`` may be a mapping or raw bytes for the payload segment; ``algorithm``
    (default: the header's ``alg``) is what actually signs, whatever the header says.
    """
    payload = (
        claims if isinstance(claims, bytes) else json.dumps(claims, separators=(",", ":")).encode()
    )
    signing_input = (
        _b64(json.dumps(dict(header), separators=(",", ":")).encode()) + "." + _b64(payload)
    ).encode("ascii")
    signer = get_default_algorithms()[algorithm or header["alg"]]
    signature = signer.sign(signing_input, key)
    return signing_input.decode("ascii") + "." + _b64(signature)


def _managed_identity_claims(resource_id: str | None) -> dict[str, Any]:
    """What Entra adds to a managed identity's token: its Azure resource id (a VM's, by
    default) and the tenant's creation time."""
    default = (
        f"/subscriptions/{uuid.uuid4()}/resourcegroups/tokenguard-rg/providers/"
        "Microsoft.Compute/virtualMachines/tokenguard-vm"
    )
    return {"xms_mirid": resource_id or default, "xms_tcdt": 1_600_000_000}


class LocalIssuer:
    """An Entra-like token issuer for tests: keys, minting, discovery and JWKS.

    ``base_url`` is where the metadata is served (any host for the mock transport;
    a real ``http://127.0.0.1:PORT`` when serving :meth:`asgi_app` on a socket).
    ``clock`` gives the wall-clock seconds used for ``iat``/``nbf``/``exp``.
    """

    def __init__(
        self,
        *,
        tenant_id: str | None = None,
        issuer: str | None = None,
        base_url: str = "https://login.tokenguard.test",
        key_type: KeyType = "RSA",
        algorithm: str | None = None,
        jwks_max_age: int = 3600,
        clock: Callable[[], float] = time.time,
        cloud_instance_name: str | None = None,
    ) -> None:
        self.tenant_id = tenant_id or str(uuid.uuid4())
        #: The discovery document's ``cloud_instance_name`` (left out when ``None``).
        self.cloud_instance_name = cloud_instance_name
        self.issuer = issuer or f"https://sts.windows.net/{self.tenant_id}/"
        self.base_url = base_url.rstrip("/")
        self.jwks_max_age = jwks_max_age
        self.clock = clock
        self.keys: dict[str, SigningKey] = {}
        self.hits: Counter[str] = Counter()
        self._jwks_cache: tuple[tuple[str, ...], bytes] | None = None
        self.signing_kid = self.add_key(key_type, alg=algorithm)
        #: A key that is never published: tokens it signs are forgeries.
        self._forger = generate_key(key_type)

    # -- URLs -------------------------------------------------------------------

    @property
    def discovery_url(self) -> str:
        """The v1-style OIDC discovery document URL."""
        return f"{self.base_url}/{self.tenant_id}/.well-known/openid-configuration"

    @property
    def jwks_uri(self) -> str:
        """The JWKS URL the discovery document points to."""
        return f"{self.base_url}/{self.tenant_id}/discovery/keys"

    # -- keys -------------------------------------------------------------------

    def add_key(
        self,
        kty: KeyType = "RSA",
        *,
        alg: str | None = None,
        kid: str | None = None,
        bits: int = 2048,
        curve: str = "P-256",
        private_key: PrivateKey | None = None,
        published: bool = True,
        issuer: str | None = None,
        cloud_instance_name: str | None = None,
    ) -> str:
        """Create (or adopt) a key, publish it in the JWKS, and return its kid.

        ``issuer`` and ``cloud_instance_name`` become the JWK members Entra v2 key sets
        carry (``issuer`` may hold ``{tenantid}``).
        """
        key = private_key or generate_key(kty, bits=bits, curve=curve)
        if alg is None:
            alg = _CURVE_ALG[curve] if kty == "EC" else _DEFAULT_ALG[kty]
        kid = kid or _b64(secrets.token_bytes(15))
        self.keys[kid] = SigningKey(
            kid,
            alg,
            key,
            published,
            issuer=issuer,
            cloud_instance_name=cloud_instance_name,
        )
        self._jwks_cache = None
        return kid

    def use_key(self, kid: str) -> None:
        """Sign new tokens with ``kid`` from now on."""
        if kid not in self.keys:
            raise KeyError(kid)
        self.signing_kid = kid

    def rotate(self, kty: KeyType = "RSA", **kwargs: Any) -> str:
        """Publish a new key and sign with it; the old one stays published until retired."""
        kid = self.add_key(kty, **kwargs)
        self.use_key(kid)
        return kid

    def retire(self, kid: str) -> None:
        """Remove a key from the JWKS (tokens it signed stop validating after a refresh)."""
        if kid == self.signing_kid:
            raise ValueError("cannot retire the key in use; rotate first")
        del self.keys[kid]
        self._jwks_cache = None

    @property
    def signing_key(self) -> SigningKey:
        """The key new tokens are signed with."""
        return self.keys[self.signing_kid]

    # -- tokens -----------------------------------------------------------------

    def claims(
        self,
        audience: str | list[str] = "https://vault.azure.net",
        *,
        kind: IdentityKind = "managed_identity",
        roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        lifetime: int = 3600,
        issued_at: float | None = None,
        object_id: str | None = None,
        app_id: str | None = None,
        mi_resource_id: str | None = None,
        tenant_id: str | None = None,
        version: Literal["1.0", "2.0"] = "1.0",
    ) -> dict[str, Any]:
        """Claims shaped like an Entra access token of the given kind.

        ``roles`` become the ``roles`` claim (left out when empty); ``scopes`` the
        ``scp`` of a ``user`` token. An app or managed-identity token without roles
        grants nothing, which validators refuse by default (see the module docstring).
        """
        now = int(self.clock() if issued_at is None else issued_at)
        oid = object_id or str(uuid.uuid4())
        tid = tenant_id or self.tenant_id
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer.replace("{tenantid}", tid),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "aio": _b64(secrets.token_bytes(48)),
        }
        client_id = app_id or str(uuid.uuid4())
        if version == "1.0":
            claims.update({"appid": client_id, "appidacr": "2"})
        else:
            claims.update({"azp": client_id, "azpacr": "2"})
        claims["idp"] = claims["iss"]
        if kind == "user":
            claims.update(
                {
                    "name": "Test User",
                    "oid": oid,
                    "scp": " ".join(scopes) or "user_impersonation",
                    "sub": _b64(secrets.token_bytes(32)),
                    "upn": "user@example.test",
                }
            )
        else:
            claims.update({"idtyp": "app", "oid": oid, "sub": oid})
        claims["rh"] = "0." + _b64(secrets.token_bytes(40)) + "."
        roles = list(roles)
        if roles:
            claims["roles"] = roles
        claims.update({"tid": tid, "uti": _b64(secrets.token_bytes(16)), "ver": version})
        if kind == "managed_identity":
            claims.update(_managed_identity_claims(mi_resource_id))
        return claims

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        kid: str | None = None,
        alg: str | None = None,
        headers: Mapping[str, Any] | None = None,
        private_key: PrivateKey | None = None,
    ) -> str:
        """Sign arbitrary claims; ``headers`` entries set to ``None`` are removed."""
        key = self.keys[kid or self.signing_kid]
        header: dict[str, Any] = {"typ": "JWT", "alg": alg or key.alg, "kid": key.kid}
        if isinstance(key.private_key, rsa.RSAPrivateKey):
            header["x5t"] = key.kid
        for name, value in (headers or {}).items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        signer = private_key or key.private_key
        algorithm = header.get("alg") if header.get("alg") in get_default_algorithms() else key.alg
        return encode_jws(header, claims, signer, algorithm=algorithm)

    def mint(
        self,
        audience: str | list[str] = "https://vault.azure.net",
        *,
        claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        kid: str | None = None,
        alg: str | None = None,
        **shape: Any,
    ) -> str:
        """A signed token; ``shape`` goes to :meth:`claims`, ``claims`` overrides
        (a ``None`` value removes the claim)."""
        body = self.claims(audience, **shape)
        for name, value in (claims or {}).items():
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value
        return self.sign(body, kid=kid, alg=alg, headers=headers)

    def forge(self, audience: str | list[str] = "https://vault.azure.net", **kwargs: Any) -> str:
        """A token with the signing kid but signed by a key the issuer never published."""
        body = self.claims(audience, **kwargs)
        return self.sign(body, private_key=self._forger)

    # -- metadata ---------------------------------------------------------------

    def discovery_document(self) -> dict[str, Any]:
        """An Entra-like OIDC discovery document."""
        document: dict[str, Any] = {
            "token_endpoint": f"{self.base_url}/{self.tenant_id}/oauth2/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": sorted(
                {k.alg for k in self.keys.values() if k.published}
            ),
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.base_url}/{self.tenant_id}/oauth2/authorize",
            "tenant_region_scope": "WW",
        }
        if self.cloud_instance_name is not None:
            document["cloud_instance_name"] = self.cloud_instance_name
        return document

    def jwks(self) -> dict[str, Any]:
        """The published public keys."""
        return json.loads(self._jwks_bytes())  # type: ignore[no-any-return]

    def _jwks_bytes(self) -> bytes:
        kids = tuple(k for k, v in self.keys.items() if v.published)
        if self._jwks_cache is None or self._jwks_cache[0] != kids:
            body = json.dumps({"keys": [self.keys[k].public_jwk for k in kids]}).encode()
            self._jwks_cache = (kids, body)
        return self._jwks_cache[1]

    def _answer(self, path: str, if_none_match: str | None) -> tuple[int, bytes, dict[str, str]]:
        prefix = f"/{self.tenant_id}"
        if path == f"{prefix}/.well-known/openid-configuration":
            self.hits["discovery"] += 1
            body = json.dumps(self.discovery_document()).encode()
            return 200, body, {"cache-control": f"max-age={self.jwks_max_age}"}
        if path == f"{prefix}/discovery/keys":
            self.hits["jwks"] += 1
            body = self._jwks_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            headers = {"cache-control": f"max-age={self.jwks_max_age}", "etag": etag}
            if if_none_match == etag:
                return 304, b"", headers
            return 200, body, headers
        return 404, b'{"error":"not_found"}', {}

    def handler(self, request: httpx.Request) -> httpx.Response:
        """An ``httpx.MockTransport`` handler serving discovery and JWKS."""
        status, body, headers = self._answer(request.url.path, request.headers.get("if-none-match"))
        headers["content-type"] = "application/json"
        return httpx.Response(status, content=body, headers=headers)

    def transport(self) -> httpx.MockTransport:
        """A mock transport that answers for this issuer (no sockets)."""
        return httpx.MockTransport(self.handler)

    def client(self) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` wired to :meth:`transport`."""
        return httpx.AsyncClient(transport=self.transport())

    def asgi_app(self) -> Starlette:
        """An ASGI app serving discovery and JWKS, for a real socket or ``ASGITransport``."""

        async def serve(request: Request) -> Response:
            status, body, headers = self._answer(
                request.url.path, request.headers.get("if-none-match")
            )
            if status == 404:
                return JSONResponse({"error": "not_found"}, status_code=404)
            return Response(
                body, status_code=status, headers=headers, media_type="application/json"
            )

        return Starlette(routes=[Route("/{path:path}", serve)])

    # -- wiring -----------------------------------------------------------------

    def issuer_config(
        self, audiences: Iterable[str] | str = ("https://vault.azure.net",), **options: Any
    ) -> Issuer:
        """An :class:`Issuer` that trusts this local issuer through discovery."""
        if isinstance(audiences, str):
            audiences = (audiences,)
        options.setdefault("discovery_url", self.discovery_url)
        options.setdefault("algorithms", tuple(sorted({k.alg for k in self.keys.values()})))
        return Issuer(issuer=self.issuer, audiences=tuple(audiences), **options)

    def validator(
        self, audiences: Iterable[str] | str = ("https://vault.azure.net",), **options: Any
    ) -> TokenValidator:
        """A :class:`TokenValidator` for this issuer, fetching through the mock transport."""
        validator_options = {
            k: options.pop(k)
            for k in (
                "cache_size",
                "max_token_bytes",
                "clock",
                "monotonic",
                "sleep",
                "jitter",
                "observer",
                "reject_id_tokens",
            )
            if k in options
        }
        return TokenValidator(
            [self.issuer_config(audiences, **options)],
            http_client=self.client(),
            **validator_options,
        )
