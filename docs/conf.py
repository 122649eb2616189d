"""Sphinx configuration of softarray's documentation site.

Build (CI runs ``.ci/docs``, which does this with warnings as errors)::

    python -P -m sphinx -W --keep-going -b html docs /tmp/docs_html

The API reference documents the *installed* softarray (``pip install .``):
its functions are compiled, so the source tree cannot be imported. ``-P``
keeps Python from importing the uncompiled ``softarray/`` folder when the
build runs from the repository root.
"""
import re
from pathlib import Path

import softarray

# Imported here, not only by autosummary, so that a module that does not
# import (scikit-learn or dask missing, a broken module) stops the build with
# its own traceback instead of a page silently missing from the reference.
import softarray.sklearn
import softarray.special

project = "softarray"
author = "the softarray developers"
copyright = "2026, the softarray developers"
release = softarray.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# plot_performance.py (the script behind _static/perf/) is not a source
# suffix, so Sphinx never reads it; _build is the usual output folder.
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# Markdown: "[text](page.md#a-heading)" links resolve to heading anchors.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# API reference: one generated page per public object (api.rst lists them).
autosummary_generate = True
autodoc_typehints = "none"          # the numpydoc sections carry the types
autodoc_default_options = {"inherited-members": False}

# numpydoc: every documented public object must have a docstring (GL08) with
# every parameter described (PR01), no parameter described that does not
# exist (PR02), a Returns section where it returns a value (RT01) and an
# example (EX01). Any failure is a Sphinx warning, so an error under -W.
numpydoc_validation_checks = {"GL08", "PR01", "PR02", "RT01", "EX01"}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = f"softarray {release}"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_depth": 2,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "getting_started": []}


API_PAGE = Path(__file__).parent / "api.rst"
DOCUMENTED_MODULES = {"softarray": softarray, "softarray.sklearn": softarray.sklearn,
                      "softarray.special": softarray.special}


def listed_in_api_page():
    """{module name: names listed in its autosummary blocks of api.rst}."""
    listed = {name: set() for name in DOCUMENTED_MODULES}
    module = None
    for line in API_PAGE.read_text().splitlines():
        current = re.match(r"\.\. currentmodule:: ([\w.]+)", line)
        if current:
            module = current.group(1)
        entry = re.fullmatch(r" {3}(\w+)", line)
        if entry and module in listed:
            listed[module].add(entry.group(1))
    return listed


def check_api_page_is_complete(app):
    """Fail the build when a name of a module's __all__ is not in api.rst,
    so a new public function cannot go undocumented."""
    listed = listed_in_api_page()
    missing = [f"{name}.{obj}" for name, module in DOCUMENTED_MODULES.items()
               for obj in module.__all__ if obj not in listed[name]]
    if missing:
        raise RuntimeError(f"docs/api.rst does not list {', '.join(missing)}")


def skip_inherited_machinery(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated metadata-routing methods
    (``set_fit_request``, ...) of SoftmaxClassifier: scikit-learn documents
    them, and their docstrings refer to its own glossary."""
    if re.fullmatch(r"set_\w+_request", name):
        return True
    return None


def setup(app):
    app.connect("builder-inited", check_api_page_is_complete)
    app.connect("autodoc-skip-member", skip_inherited_machinery)
