"""softarray's version, in a module of its own so that the base modules
(show_config, the threadpoolctl controller) read it without importing the
package's namespace. Keep equal to pyproject.toml's and meson.build's."""
__version__ = "0.1.0"
