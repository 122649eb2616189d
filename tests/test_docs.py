"""The docstring examples of the installed package run and print what they show."""
import doctest
import importlib

import pytest

MODULES = [
    "softarray._softmax",
    "softarray._losses",
    "softarray._linear_cross_entropy",
    "softarray._gating",
    "softarray._boxes",
    "softarray._threads",
    "softarray._config",
    "softarray.special",
    "softarray.sklearn",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
