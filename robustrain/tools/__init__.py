"""Scripts that produce the tables and figures under docs/results."""
