"""Benchmarks on real labelled data, runnable from Python or the command line."""
