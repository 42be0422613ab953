"""Registered vision datasets (see datasets.py for the pattern)."""
