"""Reusable test helpers (real local servers)."""
