"""App registrations, their app roles, and who holds which: what puts ``roles`` in a token.

Entra writes ``roles`` into a managed identity's token only for an API whose app roles
were assigned to that identity (an *app-role assignment*). Azure's own resources (Key
Vault, Storage, ARM) define no app roles for managed identities: their tokens carry no
``roles``, and those services look the caller's ``oid`` up in their own role
assignments (:mod:`examples.lab.identity.rbac`). So the lab keeps two separate things:

- :class:`AppDirectory`: your APIs (app registrations with app roles) and the app-role
  assignments; the issuer asks it which roles a token carries, and whether the API
  wants v1 or v2 tokens (``accessTokenAcceptedVersion``);
- :class:`~examples.lab.identity.rbac.RoleAssignments`: Azure RBAC, asked by the toy resources.

The directory starts from the configuration and changes through the issuer's admin API;
``generation`` counts the changes so cached tokens minted before one are not reused.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

__all__ = [
    "AZURE_RESOURCES",
    "MAX_ASSIGNMENTS",
    "MAX_REGISTRATIONS",
    "AppDirectory",
    "AppRegistration",
    "AppRoleAssignment",
    "TokenVersion",
]

TokenVersion = Literal[1, 2]

#: Resources of Azure services: they authorize by RBAC and no app registration may claim them.
AZURE_RESOURCES: Final = (
    "https://vault.azure.net",
    "https://storage.azure.com",
    "https://management.azure.com",
    "https://graph.microsoft.com",
)
#: Limits on what the admin API can add.
MAX_REGISTRATIONS: Final = 100
MAX_ASSIGNMENTS: Final = 10_000
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: An app role's value: what appears in ``roles`` (Entra: no spaces, at most 120 characters).
_ROLE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,119}")
_ROLE_RULE: Final = "no spaces, at most 120"
_URI: Final = re.compile(r"(?:api|https)://[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]{1,200}")


def _fold(resource: str) -> str:
    return resource.rstrip("/").lower()


_LOOPBACK: Final = ("127.0.0.1", "localhost", "::1")


def _redirect_uri_ok(uri: str) -> bool:
    parts = urlsplit(uri)
    if len(uri) > 512 or parts.fragment or not parts.hostname or not _port_ok(uri):
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)


def _port_ok(uri: str) -> bool:
    """Whether the URI's port, if any, is a valid port number."""
    try:
        urlsplit(uri).port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return False
    return True


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _same_redirect(given: str, registered: str) -> bool:
    """Exact match, except that a loopback http URI matches on any port."""
    if given == registered:
        return True
    a, b = urlsplit(given), urlsplit(registered)
    if a.scheme != "http" or b.scheme != "http" or b.hostname not in _LOOPBACK:
        return False
    if not _port_ok(given):
        return False
    return (a.hostname, a.path, a.query, a.fragment) == (b.hostname, b.path, b.query, b.fragment)


def _strings(
    values: Iterable[object],
    what: str,
    valid: Callable[[str], object],
    rule: str,
    *,
    unique: bool = True,
) -> tuple[str, ...]:
    """``values`` as a tuple of strings that ``valid`` accepts (``rule`` says which), each
    listed once when ``unique``; else ValueError naming the first offending value."""
    checked: list[str] = []
    for value in values:
        if not isinstance(value, str) or not valid(value):
            raise ValueError(f"{what} {value!r} is not valid ({rule})")
        if unique and value in checked:
            raise ValueError(f"{what} {value!r} is listed twice")
        checked.append(value)
    return tuple(checked)


def _guid(value: str, what: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise ValueError(f"{what} {value!r} is not a GUID") from None
    return str(parsed)


@dataclass(frozen=True, kw_only=True)
class AppRegistration:
    """An API registered in the tenant: its ids, its app roles, the token version it wants."""

    name: str
    #: The application (client) id: the ``aud`` of v2 tokens.
    app_id: str
    #: The Application ID URI (``api://...``): the resource v1 tokens are requested for.
    identifier_uri: str
    app_roles: tuple[str, ...]
    token_version: TokenVersion = 1
    #: Delegated scopes the API exposes (``oauth2PermissionScopes``): what ``scp`` holds.
    scopes: tuple[str, ...] = ()
    #: Where a sign-in may send the user back with a code (a public client's, e.g. Swagger
    #: UI's ``/docs/oauth2-redirect``). On ``http://127.0.0.1`` and ``http://localhost``
    #: the port is ignored, as Entra does for loopback redirect URIs (RFC 8252 7.3).
    redirect_uris: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"name {self.name!r} is not valid (letters, digits, _ . -)")
        object.__setattr__(self, "app_id", _guid(self.app_id, "app_id"))
        if not _URI.fullmatch(self.identifier_uri):
            raise ValueError(
                f"identifier_uri {self.identifier_uri!r} is not an api:// or https:// URI"
            )
        if _fold(self.identifier_uri) in AZURE_RESOURCES:
            raise ValueError(f"identifier_uri {self.identifier_uri!r} is an Azure service's")
        roles = _strings(self.app_roles, "app role", _ROLE.fullmatch, _ROLE_RULE)
        scopes = _strings(self.scopes, "scope", _ROLE.fullmatch, _ROLE_RULE)
        uris = _strings(
            self.redirect_uris,
            "redirect URI",
            _redirect_uri_ok,
            "https, or http on a loopback host; no fragment",
            unique=False,
        )
        object.__setattr__(self, "app_roles", roles)
        object.__setattr__(self, "scopes", scopes)
        object.__setattr__(self, "redirect_uris", uris)
        version: object = self.token_version  # from JSON: could be true or 2.0
        if type(version) is not int or version not in (1, 2):
            raise ValueError("token_version must be 1 or 2")

    def accepts_redirect(self, uri: str) -> bool:
        """Whether ``uri`` is one of the registered redirect URIs (loopback: any port)."""
        return any(_same_redirect(uri, registered) for registered in self.redirect_uris)

    def accepts_origin(self, origin: str) -> bool:
        """Whether a browser at ``origin`` may redeem this client's codes (the origin of a
        registered redirect URI, as Entra allows for single-page-app redirect URIs)."""
        return any(
            _same_redirect(origin + "/", _origin(registered) + "/")
            for registered in self.redirect_uris
        )

    def answers_to(self, resource: str) -> bool:
        """Whether a token request for ``resource`` names this API (URI or client id)."""
        folded = _fold(resource)
        return folded in (_fold(self.identifier_uri), self.app_id)

    def as_json(self) -> dict[str, Any]:
        """The registration as the admin API shows it."""
        return {
            "name": self.name,
            "app_id": self.app_id,
            "identifier_uri": self.identifier_uri,
            "app_roles": list(self.app_roles),
            "token_version": self.token_version,
            "scopes": list(self.scopes),
            "redirect_uris": list(self.redirect_uris),
        }


@dataclass(frozen=True, kw_only=True)
class AppRoleAssignment:
    """``principal`` (an object id) holds app role ``role`` of the API named ``app``."""

    principal: str
    app: str
    role: str

    def as_json(self) -> dict[str, str]:
        """The assignment as the admin API shows it."""
        return {"principal": self.principal, "app": self.app, "role": self.role}


class AppDirectory:
    """The tenant's app registrations and app-role assignments.

    Raises ``ValueError`` (with the reason) for a registration that clashes with another
    one, or an assignment of an unknown API or role.
    """

    def __init__(
        self,
        registrations: Iterable[AppRegistration] = (),
        assignments: Iterable[AppRoleAssignment] = (),
    ) -> None:
        self._apps: dict[str, AppRegistration] = {}
        self._assignments: list[AppRoleAssignment] = []
        #: Bumped on every change; a token minted under an older generation is not reused.
        self.generation = 0
        for registration in registrations:
            self.register(registration)
        for assignment in assignments:
            self.assign(assignment)

    @property
    def registrations(self) -> tuple[AppRegistration, ...]:
        """Every registration, in the order registered."""
        return tuple(self._apps.values())

    @property
    def assignments(self) -> tuple[AppRoleAssignment, ...]:
        """Every app-role assignment, in the order made."""
        return tuple(self._assignments)

    def app(self, name: str) -> AppRegistration:
        """The registration called ``name``; ``KeyError`` when there is none."""
        return self._apps[name]

    def for_resource(self, resource: str) -> AppRegistration | None:
        """The API a token request for ``resource`` names, or ``None`` (not a registered API)."""
        return next((a for a in self._apps.values() if a.answers_to(resource)), None)

    def roles_of(self, principal: str, app: AppRegistration) -> list[str]:
        """The app roles of ``app`` assigned to ``principal`` (an object id), sorted."""
        principal = principal.lower()
        return sorted(
            {a.role for a in self._assignments if a.principal == principal and a.app == app.name}
        )

    def register(self, registration: AppRegistration) -> None:
        """Add a registration, or replace the one of the same name.

        A replacement keeps the assignments of roles it still defines and drops the rest.
        """
        for other in self._apps.values():
            if other.name == registration.name:
                continue
            if other.app_id == registration.app_id:
                raise ValueError(f"app_id {registration.app_id} is {other.name!r}'s")
            if _fold(other.identifier_uri) == _fold(registration.identifier_uri):
                raise ValueError(
                    f"identifier_uri {registration.identifier_uri!r} is {other.name!r}'s"
                )
        if registration.name not in self._apps and len(self._apps) >= MAX_REGISTRATIONS:
            raise ValueError(f"the lab holds at most {MAX_REGISTRATIONS} app registrations")
        self._apps[registration.name] = registration
        self._assignments = [
            a
            for a in self._assignments
            if a.app != registration.name or a.role in registration.app_roles
        ]
        self.generation += 1

    def assign(self, assignment: AppRoleAssignment) -> bool:
        """Assign an app role; ``False`` when the principal already holds it."""
        app = self._apps.get(assignment.app)
        if app is None:
            known = ", ".join(self._apps) or "none"
            raise ValueError(f"no app registration {assignment.app!r} (registered: {known})")
        if assignment.role not in app.app_roles:
            raise ValueError(
                f"{assignment.app!r} has no app role {assignment.role!r} "
                f"(it has: {', '.join(app.app_roles) or 'none'})"
            )
        assignment = AppRoleAssignment(
            principal=_guid(assignment.principal, "principal"),
            app=assignment.app,
            role=assignment.role,
        )
        if assignment in self._assignments:
            return False
        if len(self._assignments) >= MAX_ASSIGNMENTS:
            raise ValueError(f"the lab holds at most {MAX_ASSIGNMENTS} app-role assignments")
        self._assignments.append(assignment)
        self.generation += 1
        return True

    def unassign(self, assignment: AppRoleAssignment) -> bool:
        """Remove an app-role assignment; ``False`` when there was none."""
        try:
            principal = _guid(assignment.principal, "principal")
        except ValueError:
            return False
        target = AppRoleAssignment(principal=principal, app=assignment.app, role=assignment.role)
        if target not in self._assignments:
            return False
        self._assignments.remove(target)
        self.generation += 1
        return True

    def as_json(self) -> dict[str, Any]:
        """Registrations and assignments, as the admin API shows them."""
        return {
            "applications": [a.as_json() for a in self._apps.values()],
            "app_role_assignments": [a.as_json() for a in self._assignments],
        }
