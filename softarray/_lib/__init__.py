"""Compiled extension modules, built by meson from ``src/``."""
