"""Benchmarks (scripts printing tables, not tests); tests import their helpers from here."""
