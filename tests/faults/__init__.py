"""Issuer faults served from a real socket on 127.0.0.1 (issue 7)."""
