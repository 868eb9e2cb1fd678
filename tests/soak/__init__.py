"""The soak runner's pytest test (the runner itself is the top-level ``soak`` package)."""
