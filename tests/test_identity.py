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
