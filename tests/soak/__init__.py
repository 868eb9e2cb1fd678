"""Bounded soak test: `python -m tests.soak` (issue 7)."""
