"""The client's side of the lab's sign-in, authorization code with PKCE, as Swagger UI
sends it: for the sign-in endpoint tests and for the FastAPI service's end-to-end test."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx


def pkce() -> tuple[str, str]:
    """A fresh PKCE pair: the verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class PublicClient:
    """A public client of the sign-in (Swagger UI's registration): its requests.

    ``changes`` to a request replace or add fields; a change to None drops the field.
    """

    client_id: str
    redirect_uri: str

    def authorize_query(
        self, scope: str, challenge: str, /, **changes: str | None
    ) -> dict[str, str]:
        """The query of an authorization request for a code bound to ``challenge``."""
        return self._request(
            {
                "response_type": "code",
                "scope": scope,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
            changes,
        )

    def redeem_form(self, code: str, verifier: str, /, **changes: str | None) -> dict[str, str]:
        """The token request that redeems ``code`` with the PKCE ``verifier``."""
        return self._request(
            {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}, changes
        )

    def _request(
        self, fields: dict[str, str | None], changes: dict[str, str | None]
    ) -> dict[str, str]:
        """``fields`` with the client id and redirect URI (every request sends both)."""
        every = {"client_id": self.client_id, "redirect_uri": self.redirect_uri, **fields}
        return {k: v for k, v in (every | changes).items() if v is not None}

    def redirected(self, response: httpx.Response) -> dict[str, str]:
        """The query an authorization answer sends back to the redirect URI (asserting that
        it is a redirect there)."""
        assert response.status_code == 302
        location = response.headers["location"]
        assert location.startswith(self.redirect_uri + "?")
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
