"""Speed benchmarks: ``python -m benchmarks.<name>``; each updates its section of RESULTS.md."""
