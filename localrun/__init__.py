"""Run the MLflow task's containers natively on loopback.

Used by the integration tests, `make local` and the benchmarks, so all three
exercise the images' own entrypoints and configs.
"""
