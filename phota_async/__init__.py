"""Asyncio-first SDK for the Phota API."""

__version__ = "0.1.0"
