"""Bounded soak test: `python -m soak` (issue 7)."""
