"""`python -m compressor` runs the `compress` command (also what torchrun launches)."""

from compressor.cli import main

main()
