"""Clustering: this member's cowsql node (engine.py), turning a standalone server into the
first member of a cluster (bootstrap.py), and the members and groups (service.py)."""
