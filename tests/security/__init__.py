"""Attack catalogue: one row per attack, through the validator and the middleware (issue 7)."""
