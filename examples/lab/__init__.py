"""The local identity lab: an Entra-like issuer, an IMDS emulator, and toy Key Vault and
Blob Storage services protected by tokenguard, all on 127.0.0.1."""
