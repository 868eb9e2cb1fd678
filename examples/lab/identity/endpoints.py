"""The identity side of one lab in one call: the issuer and the token endpoints.

What the lab runner serves and what tests drive in process, wired the same way: a
:class:`~examples.lab.identity.issuer.LabIssuer` signing with a key ring, the
:class:`~examples.lab.identity.tokens.TokenService` both token endpoints hand out from,
and the issuer, IMDS and App Service apps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette

from .appservice import create_app_service_app
from .imds import create_imds_app
from .issuer import LabIssuer
from .keys import KeyRing
from .tenant import LabConfig
from .tokens import TokenService

__all__ = ["IdentityEndpoints"]


@dataclass(frozen=True, kw_only=True)
class IdentityEndpoints:
    """The issuer, its token service, and the ASGI app of each identity endpoint."""

    issuer: LabIssuer
    tokens: TokenService
    #: Discovery, JWKS, sign-in and the admin routes.
    issuer_app: Starlette
    imds: Starlette
    app_service: Starlette

    @classmethod
    def create(
        cls,
        config: LabConfig,
        keys: KeyRing,
        *,
        base_url: str,
        admin_secret: str,
        identity_header: str,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> IdentityEndpoints:
        """The endpoints of ``config``'s tenant: the issuer served at ``base_url`` with its
        admin routes behind ``admin_secret``, App Service expecting ``identity_header``;
        ``clock`` drives token times, ``monotonic`` the rate limits."""
        issuer = LabIssuer(config, keys, base_url=base_url, clock=clock, admin_secret=admin_secret)
        tokens = TokenService(issuer)
        return cls(
            issuer=issuer,
            tokens=tokens,
            issuer_app=issuer.app(),
            imds=create_imds_app(config, tokens, monotonic=monotonic),
            app_service=create_app_service_app(
                config, tokens, secret=identity_header, monotonic=monotonic
            ),
        )

    def apps(self) -> dict[str, Starlette]:
        """Each app by the name the lab serves it under."""
        return {"issuer": self.issuer_app, "imds": self.imds, "app_service": self.app_service}
