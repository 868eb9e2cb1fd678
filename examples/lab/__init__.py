"""The local identity lab: an Entra-like issuer, an IMDS emulator, an App Service identity
endpoint, and toy Key Vault and Blob Storage services protected by tokenguard, all on
127.0.0.1. One package per area, each exporting its API from ``__init__``:

    identity/   the tenant (config model, app registrations, RBAC), signing keys, the
                issuer, and the IMDS and App Service token endpoints
    resource/   what the toy services share: tokenguard in front, RBAC by object id,
                Azure's headers, errors in each service's dialect, durable SQLite
    keyvault/   the toy Key Vault (secrets)
    blob/       the toy Blob Storage
    runtime/    the config file, TLS, serving, the Lab runner and its env files

``python -m examples.lab`` runs it (``make lab``); ``demo.py`` holds what the two demo
scripts share; ``default.toml`` is the lab's tenant.
"""
