"""Muster workflows domain."""
