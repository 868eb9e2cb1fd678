"""Key rotation through the running lab, and keys that survive a restart."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import jwt
import pytest
from examples.lab.identity import ADMIN_HEADER, LabConfig
from examples.lab.runtime import Lab, LabThread

from tokenguard import InvalidToken, Issuer, TokenValidator

from ...helpers import FakeClock

pytestmark = [pytest.mark.lab, pytest.mark.anyio]

VAULT = "https://vault.azure.net"


async def imds_token(http: httpx.AsyncClient, lab: Lab) -> str:
    response = await http.get(
        lab.urls.imds + "/metadata/identity/oauth2/token",
        params={"api-version": "2018-02-01", "resource": VAULT},
        headers={"Metadata": "true"},
    )
    assert response.status_code == 200
    token: str = response.json()["access_token"]
    return token


async def published_kids(http: httpx.AsyncClient, lab: Lab) -> list[str]:
    keys = (await http.get(lab.urls.jwks_uri)).json()["keys"]
    return [key["kid"] for key in keys]


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


async def test_rotation_end_to_end(
    tmp_path: Path, roomy_config: LabConfig, clean_env: pytest.MonkeyPatch
) -> None:
    clock, monotonic = FakeClock(time.time()), FakeClock(0.0)
    lab = Lab(tmp_path, config=roomy_config, base_port=0, clock=clock, log=None, services=())
    with LabThread(lab):
        trusted = Issuer(  # as Key Vault would: its tokens carry no roles
            issuer=lab.issuer.issuer,
            audiences=(VAULT,),
            discovery_url=lab.urls.discovery_url,
            require_roles_or_scopes=False,
        )
        async with (
            httpx.AsyncClient(trust_env=False) as http,
            TokenValidator([trusted], clock=clock, monotonic=monotonic) as validator,
        ):
            old_token = await imds_token(http, lab)
            old_kid = kid_of(old_token)
            await validator.validate(old_token)

            # What `python -m examples.lab rotate` sends.
            secret = (tmp_path / "admin-secret").read_text().strip()
            rotated = await http.post(
                lab.urls.issuer + "/_lab/rotate",
                json={"overlap": 60, "retire_after": 120},
                headers={ADMIN_HEADER: secret},
            )
            assert rotated.status_code == 200
            new_kid = rotated.json()["kid"]
            assert await published_kids(http, lab) == [old_kid, new_kid]
            # Published first; the old key signs until the overlap is over.
            assert await imds_token(http, lab) == old_token

            clock.advance(60)
            monotonic.advance(60)
            new_token = await imds_token(http, lab)
            assert kid_of(new_token) == new_kid
            fetches = lab.issuer.hits["jwks_v1"]
            identity = await validator.validate(new_token)  # its first request: accepted
            assert identity.object_id == lab.config.vm.identity.object_id
            assert lab.issuer.hits["jwks_v1"] == fetches + 1  # the unknown kid made it refetch
            await validator.validate(old_token)  # the old key is still published

            clock.advance(120)
            monotonic.advance(120)
            assert await published_kids(http, lab) == [new_kid]
            # Until the validator refreshes, it still trusts the old key it holds.
            await validator.validate(old_token)
            monotonic.advance(3_600)  # past the JWKS max-age
            await validator.validate(new_token)  # starts the due refresh in the background
            await validator.warm_up()  # ... and this waits for it
            with pytest.raises(InvalidToken) as caught:
                await validator.validate(old_token)
            assert caught.value.reason == "unknown_key"
            assert (await validator.validate(new_token)).object_id == identity.object_id


async def test_keys_survive_a_restart(
    tmp_path: Path, roomy_config: LabConfig, clean_env: pytest.MonkeyPatch
) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        with LabThread(
            Lab(tmp_path, config=roomy_config, base_port=0, log=None, services=())
        ) as lab:
            token = await imds_token(http, lab)
            before = await published_kids(http, lab)
        with LabThread(
            Lab(tmp_path, config=roomy_config, base_port=0, log=None, services=())
        ) as lab:
            assert await published_kids(http, lab) == before
            trusted = Issuer(  # as Key Vault would: its tokens carry no roles
                issuer=lab.issuer.issuer,
                audiences=(VAULT,),
                discovery_url=lab.urls.discovery_url,
                require_roles_or_scopes=False,
            )
            async with TokenValidator([trusted]) as validator:
                identity = await validator.validate(token)  # issued before the restart
            assert identity.mi_resource_id == lab.config.vm.identity.resource_id
