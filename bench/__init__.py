"""Benchmarks of the operator against a real API server; they print JSON, never assert on time.

`python -m bench` (or `bench/run`) starts its own local control plane, runs the operator as a
real process under its least-privilege ServiceAccount and measures it against the practical
limit of the same client library. bench/README.md explains every figure it prints.
"""
