"""The package version: a leaf module, so that any module can import it without a cycle."""

__version__ = "0.1.0"
"""The version of the installed ``phota_async`` package."""
