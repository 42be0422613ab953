"""Registered text datasets (see datasets.py for the pattern)."""
