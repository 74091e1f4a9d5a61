"""Stapes: system container, application container and VM manager speaking Incus's REST API."""

__version__ = "0.1.0"
