"""Running the lab: its configuration file, TLS, the servers, and the env files clients load.

- :func:`load_config`: ``default.toml`` (or ``LAB_CONFIG``) checked into a
  :class:`~examples.lab.identity.LabConfig`, with :class:`ConfigError` naming any mistake;
- :func:`ensure_tls`: the lab CA and the server certificate of the https toy services;
- :class:`Lab`: every service on 127.0.0.1 in one asyncio loop (:class:`LabThread` runs
  it in a background thread for synchronous clients), then ``$LAB_DIR/env``;
- :func:`add_swagger_ui`: ``/docs`` of a FastAPI app served by the lab's machine, with
  Swagger UI's files from a package instead of a CDN (works offline).
"""

from .config import DEFAULT_CONFIG, MIN_TOKEN_LIFETIME, ConfigError, load_config, parse_config
from .runner import (
    DEFAULT_PORT,
    Lab,
    LabThread,
    LabUrls,
    ServiceState,
    config_from_env,
    port_from_env,
)
from .serving import HOST, LabError
from .swagger import add_swagger_ui
from .tls import SERVER_NAMES, TlsFiles, ensure_tls

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_PORT",
    "HOST",
    "MIN_TOKEN_LIFETIME",
    "SERVER_NAMES",
    "ConfigError",
    "Lab",
    "LabError",
    "LabThread",
    "LabUrls",
    "ServiceState",
    "TlsFiles",
    "add_swagger_ui",
    "config_from_env",
    "ensure_tls",
    "load_config",
    "parse_config",
    "port_from_env",
]
