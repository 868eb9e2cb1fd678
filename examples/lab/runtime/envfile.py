"""``$LAB_DIR/env`` and ``$LAB_DIR/env.appservice``: what a client of the lab exports.

``env`` selects the IMDS flow (``AZURE_POD_IDENTITY_AUTHORITY_HOST``) and names the issuer
and resources. ``env.appservice`` selects the App Service flow instead
(``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``); azure-identity prefers it whenever both
variables are set, so it lives in its own file (mode 0600: it holds the endpoint secret).
The CA bundle holds the public roots plus the lab CA, so exporting ``SSL_CERT_FILE`` does
not cut the shell off from the internet.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runner import Lab

__all__ = ["lab_environment", "write_ca_bundle", "write_env_files"]


def lab_environment(lab: Lab) -> dict[str, str]:
    """The variables ``$LAB_DIR/env`` exports, by name."""
    urls = lab.urls
    env = {
        "AZURE_POD_IDENTITY_AUTHORITY_HOST": urls.imds,
        "LAB_DIR": str(lab.state_dir),
        "LAB_TENANT_ID": lab.config.tenant_id,
        "LAB_AUTHORITY": urls.authority,
        "LAB_ISSUER": lab.issuer.issuer,
        "LAB_DISCOVERY_URL": urls.discovery_url,
        "LAB_DISCOVERY_URL_V2": urls.discovery_url_v2,
        "LAB_JWKS_URI": urls.jwks_uri,
    }
    if urls.keyvault:
        env["LAB_KEYVAULT_URL"] = urls.keyvault
    if urls.storage:
        env["LAB_STORAGE_URL"] = urls.storage
    if lab.ca_cert is not None:
        env["LAB_CA_CERT"] = str(lab.ca_cert)
    if lab.ca_bundle is not None:
        env["REQUESTS_CA_BUNDLE"] = str(lab.ca_bundle)
        env["SSL_CERT_FILE"] = str(lab.ca_bundle)
    return env


def write_ca_bundle(ca_cert: Path, target: Path) -> Path:
    """Public roots (certifi, when installed) followed by the lab CA, written to ``target``."""
    parts: list[bytes] = []
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with requests (azure-core)
        pass
    else:
        parts.append(Path(certifi.where()).read_bytes())
    parts.append(ca_cert.read_bytes())
    target.write_bytes(b"\n".join(p.rstrip(b"\n") for p in parts) + b"\n")
    return target


def _lines(env: dict[str, str]) -> list[str]:
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]


def write_env_files(lab: Lab) -> Path | None:
    """Write ``env`` and ``env.appservice`` under the lab dir; returns the CA bundle path."""
    state = lab.state_dir
    if lab.ca_cert is not None:
        lab.ca_bundle = write_ca_bundle(lab.ca_cert, state / "ca-bundle.pem")
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    header = [
        f"# tokenguard identity lab, written {now} by pid {os.getpid()}.",
        f"# Load it in a shell:  . {shlex.quote(str(state / 'env'))}",
        "# azure-identity's ManagedIdentityCredential then talks to the lab's IMDS.",
        "# For the App Service flavour instead, also load env.appservice next to this file.",
    ]
    (state / "env").write_text("\n".join([*header, *_lines(lab_environment(lab))]) + "\n")
    appservice = {
        "IDENTITY_ENDPOINT": lab.urls.identity_endpoint,
        "IDENTITY_HEADER": lab.identity_header,
    }
    path = state / "env.appservice"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write("# Switches azure-identity to the App Service flow (it wins over IMDS).\n")
        file.write("\n".join(_lines(appservice)) + "\n")
    return lab.ca_bundle
