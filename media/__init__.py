"""Muster media domain."""
