"""Identity kinds and claim mapping."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

import pytest

from tokenguard import Identity, TokenGuardUser
from tokenguard._identity import identity_from_claims

BASE: dict[str, Any] = {"iss": "i", "exp": 10}


def make(**claims: Any) -> Any:
    return identity_from_claims({**BASE, **claims}, audience="aud")


@pytest.mark.parametrize(
    ("claims", "kind"),
    [
        ({"idtyp": "app", "xms_mirid": "/x/vm"}, "managed_identity"),
        ({"idtyp": "app"}, "app"),
        ({"idtyp": "user", "xms_mirid": "/x/vm"}, "user"),
        ({"oid": "o", "sub": "o"}, "app"),
        ({"oid": "o", "sub": "o", "xms_mirid": "/x/vm"}, "managed_identity"),
        ({"oid": "o", "sub": "o", "scp": "read"}, "user"),
        ({"oid": "o", "sub": "other"}, "user"),
        ({}, "user"),
    ],
)
def test_kind(claims: dict[str, Any], kind: str) -> None:
    assert make(**claims).kind == kind


def test_roles_and_scopes() -> None:
    who = make(roles=["Key Vault Secrets User", 3, "B"], scp="read  write")
    assert who.roles == {"Key Vault Secrets User", "B"}
    assert who.scopes == {"read", "write"}
    assert who.permissions == {"Key Vault Secrets User", "B", "read", "write"}
    assert make(roles="Single Role").roles == {"Single Role"}
    assert make(roles=[{"x": 1}, "ok"]).roles == {"ok"}
    assert make(roles=7).roles == frozenset()
    assert make(scp=["a", "b"]).scopes == {"a", "b"}
    assert make(scp=7).scopes == frozenset()


def test_identifiers() -> None:
    who = make(oid="o", sub="s", tid="t", azp="client", nbf=5, xms_mirid="/a/b/my-vm/")
    assert (who.object_id, who.subject, who.tenant_id, who.app_id) == ("o", "s", "t", "client")
    assert who.not_before == 5 and who.expires_at == 10
    assert who.display_name == "my-vm"
    assert make(oid="", appid="app").display_name == "app"
    assert make(oid=5).object_id is None
    assert make(sub="only").display_name == "only"
    assert make().display_name == ""


def test_starlette_user() -> None:
    who = make(oid="o", idtyp="app")
    user = TokenGuardUser(who)
    assert user.is_authenticated and user.identity is who
    assert user.display_name == "o" and user.identity_id == "o"
    assert repr(user) == "TokenGuardUser(app, 'o')"
    assert TokenGuardUser(make(sub="s")).identity_id == "s"
    assert TokenGuardUser(make()).identity_id == ""


def test_rfc9068_scope_claim() -> None:
    assert make(scope="read write").scopes == {"read", "write"}
    assert make(scp="a", scope="b").scopes == {"a"}


def test_built_identities_are_ordinary_frozen_identities() -> None:
    claims = {
        "iss": "i",
        "exp": 5,
        "oid": "o",
        "roles": ["R"],
        "xms_mirid": "/x/vm",
        "idtyp": "app",
    }
    built = identity_from_claims(claims, audience="a")
    assert type(built) is Identity
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.kind = "user"  # type: ignore[misc]
    same = Identity(
        kind="managed_identity",
        object_id="o",
        tenant_id=None,
        app_id=None,
        subject=None,
        issuer="i",
        audience="a",
        mi_resource_id="/x/vm",
        roles=frozenset({"R"}),
        expires_at=5,
        claims=built.claims,
    )
    assert built == same and repr(built) == repr(same)
    assert isinstance(built.claims, MappingProxyType)
    assert dataclasses.replace(built, audience="b").audience == "b"


# -- kinds of tokens from servers other than Entra (rule 3) ------------------------


@pytest.mark.parametrize(
    ("claims", "kind"),
    [
        # RFC 9068 section 2.2: a client-credentials token's sub is the client.
        ({"sub": "orders-worker", "client_id": "orders-worker"}, "app"),
        ({"sub": "alice", "client_id": "orders-web"}, "user"),
        # Okta: sub == cid for client credentials; a user's sub is the login.
        ({"sub": "0oa1clientid", "cid": "0oa1clientid", "scp": ["orders.read"]}, "app"),
        ({"sub": "alice@example.com", "cid": "0oa1clientid", "uid": "00u1"}, "user"),
        # Auth0: "<client id>@clients".
        ({"sub": "AbC123@clients", "azp": "AbC123", "gty": "client-credentials"}, "app"),
        ({"sub": "auth0|6553da60", "azp": "AbC123"}, "user"),
        ({"sub": "other@clients", "azp": "AbC123"}, "user"),
        # Keycloak: the client's service-account user, its username lower-cased.
        (
            {
                "sub": "d952cf23",
                "azp": "Orders-Worker",
                "preferred_username": "service-account-orders-worker",
            },
            "app",
        ),
        (
            {
                "sub": "d952cf23",
                "azp": "orders-web",
                "preferred_username": "service-account-orders-worker",
            },
            "user",
        ),
        ({"sub": "d952cf23", "preferred_username": "service-account-x"}, "user"),
        ({"sub": "d952cf23", "azp": "orders-web", "preferred_username": "alice"}, "user"),
        ({"azp": "c", "client_id": "c"}, "user"),  # no sub: nothing says who
        # Entra's rules come first: oid present decides, whatever sub and azp say.
        ({"oid": "o", "sub": "c", "azp": "c"}, "user"),
        ({"idtyp": "user", "sub": "c", "client_id": "c"}, "user"),
    ],
)
def test_kind_of_other_servers(claims: dict[str, Any], kind: str) -> None:
    assert make(**claims).kind == kind


# -- guests -------------------------------------------------------------------------

TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
HOME = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
V1_ISS = f"https://sts.windows.net/{TID}/"
V2_ISS = f"https://login.microsoftonline.com/{TID}/v2.0"


def user(**claims: Any) -> Identity:
    return identity_from_claims(
        {"exp": 10, "oid": "o", "sub": "s", "scp": "read", "tid": TID, **claims}, audience="a"
    )


@pytest.mark.parametrize(
    ("claims", "guest"),
    [
        ({"iss": V1_ISS, "idp": V1_ISS}, False),  # a member (v1): idp == iss
        ({"iss": V2_ISS}, False),  # no idp: iss is the provider
        ({"iss": V2_ISS, "idp": V1_ISS}, False),  # v1-style idp naming the same tenant
        ({"iss": V1_ISS, "idp": f"https://sts.windows.net/{HOME}/"}, True),  # B2B guest
        ({"iss": V2_ISS, "idp": f"https://sts.windows.net/{HOME}/"}, True),
        ({"iss": V1_ISS, "idp": "live.com"}, True),  # a personal account invited
        ({"iss": V1_ISS, "idp": "google.com"}, True),
        # acct decides when present, whatever idp says.
        ({"iss": V1_ISS, "acct": 1}, True),
        ({"iss": V1_ISS, "acct": "1"}, True),
        ({"iss": V1_ISS, "acct": 0, "idp": "live.com"}, False),
        ({"iss": V1_ISS, "acct": 1, "idp": V1_ISS}, True),
        # Apps and managed identities are never guests.
        ({"iss": V1_ISS, "idtyp": "app", "acct": 1}, False),
        ({"iss": V2_ISS, "idtyp": "app", "idp": f"https://sts.windows.net/{HOME}/"}, False),
        # Without tid (not Entra) idp means something else: only acct counts.
        ({"iss": "https://okta.example.com", "idp": "00ok1u7AsAkrwdZL3z0g", "tid": None}, False),
    ],
)
def test_is_guest(claims: dict[str, Any], guest: bool) -> None:
    body = {k: v for k, v in claims.items() if v is not None}
    if claims.get("tid", TID) is None:
        who = identity_from_claims({"exp": 10, "sub": "s", **body}, audience="a")
    else:
        who = user(**body)
    assert who.is_guest is guest


def test_personal_accounts_are_not_guests_of_their_own_tenant() -> None:
    consumers = "9188040d-6c67-4c5b-b112-36a304b66dad"
    iss = f"https://login.microsoftonline.com/{consumers}/v2.0"
    assert not user(iss=iss, tid=consumers, idp="live.com").is_guest


# -- names read from the claims -----------------------------------------------------


def test_names_from_entra_claims() -> None:
    who = user(
        iss=V1_ISS,
        name="Ada Lovelace",
        upn="ada@contoso.com",
        unique_name="ada@contoso.com",
        email="ada@example.org",
    )
    assert (who.name, who.username, who.email) == (
        "Ada Lovelace",
        "ada@contoso.com",
        "ada@example.org",
    )
    assert (
        user(iss=V2_ISS, preferred_username="ada@contoso.com", upn="x").username
        == "ada@contoso.com"
    )
    assert (
        user(iss=V1_ISS, unique_name="live.com#ada@example.org").username
        == "live.com#ada@example.org"
    )
    # upn is a sign-in name, not a mailbox: never taken as the email.
    assert user(iss=V1_ISS, upn="ada@contoso.com").email is None
    assert user(iss=V1_ISS, name="", preferred_username=3).name is None
    assert user(iss=V1_ISS).username is None


def test_b2c_user_flow_and_emails() -> None:
    b2c = "https://contoso.b2clogin.com/tid/v2.0/"
    who = identity_from_claims(
        {
            "iss": b2c,
            "exp": 10,
            "sub": "s",
            "scp": "read",
            "tfp": "B2C_1_signupsignin",
            "emails": ["ada@example.org", "second@example.org"],
        },
        audience="a",
    )
    assert who.user_flow == "B2C_1_signupsignin"
    assert who.email == "ada@example.org"
    acr = identity_from_claims(
        {"iss": b2c, "exp": 10, "sub": "s", "acr": "b2c_1a_signin"}, audience="a"
    )
    assert acr.user_flow == "b2c_1a_signin"
    # Keycloak's acr is an authentication level, not a flow.
    assert identity_from_claims({"iss": "k", "exp": 10, "acr": "1"}, audience="a").user_flow is None
    assert (
        identity_from_claims({"iss": "k", "exp": 10, "emails": [3, ""]}, audience="a").email is None
    )


def test_to_dict_carries_the_new_fields() -> None:
    who = user(iss=V1_ISS, idp="live.com", name="Ada", upn="ada@contoso.com")
    data = who.to_dict()
    assert data["is_guest"] is True
    assert (data["name"], data["username"], data["email"], data["user_flow"]) == (
        "Ada",
        "ada@contoso.com",
        None,
        None,
    )


# -- claim paths (Issuer roles_claim / scopes_claim) ----------------------------------


def test_mapped_roles_and_scopes() -> None:
    claims = {
        "iss": "k",
        "exp": 10,
        "roles": ["entra-style"],
        "scp": "entra-scope",
        "realm_access": {"roles": ["admin", "", 3, "user"]},
        "resource_access": {"orders-api": {"roles": ["orders.write"]}},
        "scope": "openid orders.read",
        "permissions": "a b",
    }
    realm = identity_from_claims(
        claims, audience="a", roles_path=("realm_access", "roles"), scopes_path=("scope",)
    )
    assert realm.roles == {"admin", "user"}
    assert realm.scopes == {"openid", "orders.read"}
    client = identity_from_claims(
        claims, audience="a", roles_path=("resource_access", "orders-api", "roles")
    )
    assert client.roles == {"orders.write"}
    assert client.scopes == {"entra-scope"}  # scopes unmapped: scp as before
    assert identity_from_claims(claims, audience="a", roles_path=("permissions",)).roles == {
        "a",
        "b",
    }
    for missing in (("nope",), ("realm_access", "nope"), ("scope", "deeper"), ("realm_access",)):
        assert identity_from_claims(claims, audience="a", roles_path=missing).roles == frozenset()
