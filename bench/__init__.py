"""Benchmarks that print ratios against baselines run in the same run (`make bench`)."""
