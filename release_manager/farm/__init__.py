"""Batch farms: site files (site.py), job scripts and submission (launcher.py), accounting (accounting.py)."""
