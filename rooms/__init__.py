"""Muster rooms domain."""
