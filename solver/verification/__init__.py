"""The solver against published benchmarks (docs/verification.md)."""
