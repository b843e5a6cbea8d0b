"""Instruction-level comparison of compiled models: listings, the diff engine, golden streams
and the host-trace check (doc/compare.md)."""
