"""Airflow operators, sensors and hooks that run the chroma_migrate engine against snapshots.

Thin on purpose: every operator stores and validates its arguments in __init__ and does
its I/O in execute, through the engine (`include/chroma_migrate`) and the Amazon provider.
"""
