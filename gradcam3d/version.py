"""The engine's version, recorded in every manifest (its own module, so the manifest code can
read it without importing the package's public API)."""

__version__ = "0.1.0"
