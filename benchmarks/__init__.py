"""Benchmarks of the provider (``make bench``; not part of the test suite). See docs/benchmarks.md."""

from __future__ import annotations
