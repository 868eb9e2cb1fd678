"""Property-based fuzzing of the token parser, validator and header parsing (issue 7).

The properties live in :mod:`fuzz.harness`; ``python -m fuzz`` is the long run.
"""
