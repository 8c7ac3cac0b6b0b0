"""Benchmarks and the labelled near-duplicate set; a package so tests can import the shared yardstick."""
