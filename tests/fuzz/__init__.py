"""Property-based fuzzing of the token parser, validator and header parsing (issue 7)."""
