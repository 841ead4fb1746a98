"""compressor: distil a teacher into a small student (AMKD), export it, and gate it in CI."""

__version__ = "0.1.0"
