"""Benchmarks: each prints `name: value unit` lines; `python -m bench.run_all` runs them all."""
