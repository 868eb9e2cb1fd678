"""The public test helpers behave as documented."""

from __future__ import annotations

import httpx
import pytest

from tokenguard import InvalidToken
from tokenguard.testing import LocalIssuer, encode_jws, generate_key

pytestmark = pytest.mark.anyio


async def test_asgi_app_serves_discovery_and_jwks_with_etag() -> None:
    issuer = LocalIssuer()
    transport = httpx.ASGITransport(app=issuer.asgi_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://issuer") as client:
        discovery = (
            await client.get(f"/{issuer.tenant_id}/.well-known/openid-configuration")
        ).json()
        assert discovery["issuer"] == issuer.issuer
        assert discovery["jwks_uri"] == issuer.jwks_uri
        keys = await client.get(f"/{issuer.tenant_id}/discovery/keys")
        jwk = keys.json()["keys"][0]
        assert list(jwk) == ["kty", "use", "kid", "x5t", "n", "e", "x5c"]  # Entra's shape
        assert keys.headers["cache-control"] == "max-age=3600"
        again = await client.get(
            f"/{issuer.tenant_id}/discovery/keys", headers={"if-none-match": keys.headers["etag"]}
        )
        assert again.status_code == 304
        assert (await client.get("/nothing")).status_code == 404
    assert issuer.hits == {"discovery": 1, "jwks": 2}


async def test_rotation_and_retirement() -> None:
    issuer = LocalIssuer()
    first = issuer.signing_kid
    second = issuer.rotate()
    assert issuer.signing_kid == second
    assert {k["kid"] for k in issuer.jwks()["keys"]} == {first, second}
    with pytest.raises(ValueError):
        issuer.retire(second)
    issuer.retire(first)
    assert [k["kid"] for k in issuer.jwks()["keys"]] == [second]
    with pytest.raises(KeyError):
        issuer.use_key(first)
    assert issuer.jwks() == issuer.jwks()  # certificates made once, not per request
    staged = issuer.add_key("EC", published=False)
    assert staged not in {k["kid"] for k in issuer.jwks()["keys"]}


async def test_minted_shapes() -> None:
    issuer = LocalIssuer()
    user = issuer.claims(kind="user", scopes=["a", "b"])
    assert user["scp"] == "a b" and "idtyp" not in user and user["oid"] != user["sub"]
    app = issuer.claims(kind="app", version="2.0")
    assert app["idtyp"] == "app" and "xms_mirid" not in app and app["azp"]
    mi = issuer.claims(roles=["R"])
    assert mi["xms_mirid"] and mi["roles"] == ["R"] and mi["ver"] == "1.0"
    assert mi["exp"] - mi["iat"] == 3600


async def test_validator_from_issuer_and_encode_jws() -> None:
    issuer = LocalIssuer()
    validator = issuer.validator("https://vault.azure.net")
    assert (await validator.validate(issuer.mint(kind="user"))).kind == "user"
    raw = encode_jws(
        {"alg": "RS256", "kid": issuer.signing_kid}, b"not json", issuer.signing_key.private_key
    )
    with pytest.raises(InvalidToken):
        await validator.validate(raw)
    assert generate_key("EC", curve="P-384").curve.name == "secp384r1"  # type: ignore[union-attr]
    await validator.aclose()


async def test_tokens_without_roles_are_refused_unless_the_issuer_opts_out() -> None:
    # What the module docstring promises: an MI token minted without roles grants
    # nothing, as a real one for Key Vault does; a user token always has scp.
    issuer = LocalIssuer()
    token = issuer.mint()
    assert {"roles", "scp"}.isdisjoint(issuer.claims())
    strict = issuer.validator(["https://vault.azure.net"])
    with pytest.raises(InvalidToken) as info:
        await strict.validate(token)
    assert info.value.reason == "no_permissions"
    assert (await strict.validate(issuer.mint(kind="user"))).scopes == {"user_impersonation"}
    relaxed = issuer.validator(["https://vault.azure.net"], require_roles_or_scopes=False)
    identity = await relaxed.validate(token)
    assert identity.roles == frozenset() and identity.scopes == frozenset()
    await strict.aclose()
    await relaxed.aclose()


async def test_entra_v2_key_members_and_cloud_instance() -> None:
    template = "https://login.microsoftonline.test/{tenantid}/v2.0"
    issuer = LocalIssuer(issuer=template, cloud_instance_name="microsoftonline.com")
    kid = issuer.add_key(issuer=template, cloud_instance_name="microsoftonline.com")
    jwk = next(k for k in issuer.jwks()["keys"] if k["kid"] == kid)
    assert list(jwk)[-2:] == ["cloud_instance_name", "issuer"]  # Entra's order
    assert (jwk["issuer"], jwk["cloud_instance_name"]) == (template, "microsoftonline.com")
    first = next(k for k in issuer.jwks()["keys"] if k["kid"] != kid)
    assert "issuer" not in first and "cloud_instance_name" not in first
    assert issuer.discovery_document()["cloud_instance_name"] == "microsoftonline.com"
    assert "cloud_instance_name" not in LocalIssuer().discovery_document()
