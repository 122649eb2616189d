"""The package's layers (docs/architecture.md): every module sits in one
layer and imports only modules of its own layer or below; the import graph,
imports inside functions included, has no cycle; adapters read what a
function declares (softarray._declare), never a family's module or private
names; and every array function of the namespace carries its declaration.

The checks read the installed package's sources with ``ast`` (nothing is
imported), and test_the_checks_can_fail shows each one failing on a copy of
the package with one import added.
"""
import ast
import pathlib
import shutil

import pytest

import softarray as sa

# Layers from the bottom up; a module's layer is that of its longest prefix here.
LAYERS = {
    "softarray._lib": "kernels",
    "softarray._version": "base",
    "softarray._validate": "base",
    "softarray._layout": "base",
    "softarray._dispatch": "base",
    "softarray._threads": "base",
    "softarray._output_cache": "base",
    "softarray._config": "base",
    "softarray._declare": "base",
    "softarray._reduction": "base",
    "softarray._conventions": "base",
    "softarray._portable": "families",
    "softarray._softmax": "families",
    "softarray._losses": "families",
    "softarray._linear_cross_entropy": "families",
    "softarray._gating": "families",
    "softarray._boxes": "families",
    "softarray._adapters": "adapters",
    "softarray.special": "consumers",
    "softarray.sklearn": "consumers",
    "softarray._linear_objective": "consumers",
    "softarray._sklearn_dask": "consumers",
    "softarray": "namespace",
    "softarray.__main__": "namespace",
}
ORDER = ["kernels", "base", "families", "adapters", "consumers", "namespace"]


def layer_of(module, layers=LAYERS):
    """The layer of module, or of its longest subpackage in layers (the
    package itself places only its __init__), or None."""
    if module in layers:
        return layers[module]
    parts = module.split(".")
    for n in range(len(parts) - 1, 1, -1):
        prefix = ".".join(parts[:n])
        if prefix in layers:
            return layers[prefix]
    return None


def package_modules(root, package):
    """{module name: path} of the .py files under root (the package folder)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join([package, *parts])] = path
    return modules


def imports_of(module, path, modules):
    """(imported module, the names taken from it) pairs of every import
    statement of the module, at any depth; plus attributes read off names
    bound to modules (``_losses._reduce`` counts as taking ``_reduce``)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found, bound = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, ()))
                bound[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                # compiled modules (softarray._lib._softmax) have no .py file
                if submodule in modules or (layer_of(base) == "kernels" and alias.name[0] == "_"):
                    found.append((submodule, ()))
                    bound[alias.asname or alias.name] = submodule
                else:
                    found.append((base, (alias.name,)))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in bound):
            found.append((bound[node.value.id], (node.attr,)))
    return found


def layer_problems(root, package="softarray", layers=LAYERS):
    """Every breach of the rules in this module's text, as readable lines."""
    modules = package_modules(root, package)
    problems, graph = [], {}
    for module, path in modules.items():
        own = layer_of(module, layers)
        if own is None:
            problems.append(f"{module} is in no layer (add it to LAYERS)")
            continue
        graph[module] = set()
        for target, names in imports_of(module, path, modules):
            if target != package and not target.startswith(package + "."):
                continue
            theirs = layer_of(target, layers)
            if target in modules:
                graph[module].add(target)
            if theirs is not None and ORDER.index(theirs) > ORDER.index(own):
                problems.append(f"{module} ({own}) imports {target} ({theirs}), a layer above")
            if theirs == "families" and own != "families":
                private = [name for name in names if name.startswith("_")]
                if private:
                    problems.append(f"{module} ({own}) reads private names {private} of {target}")
                if own == "adapters":
                    problems.append(f"{module} (an adapter) imports the family {target}: "
                                    "adapters read declarations only")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return list(dict.fromkeys(problems))


def import_graph(root, package="softarray"):
    """{module: sorted modules of the package it imports}."""
    modules = package_modules(root, package)
    return {module: sorted({target for target, _ in imports_of(module, path, modules)
                            if target.startswith(package + ".") or target == package} - {module})
            for module, path in modules.items()}


def cycles(graph):
    """One cycle through each strongly connected part of the graph that has
    one (depth-first search; a cycle is the path back to a grey module)."""
    found, colour, path = [], {}, []

    def visit(module):
        colour[module] = "grey"
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if colour.get(target) == "grey":
                found.append(path[path.index(target):] + [target])
            elif target not in colour:
                visit(target)
        path.pop()
        colour[module] = "black"

    for module in sorted(graph):
        if module not in colour:
            visit(module)
    return found


PACKAGE_ROOT = pathlib.Path(sa.__file__).parent


def test_every_module_in_a_layer_importing_only_down_and_no_cycle():
    assert layer_problems(PACKAGE_ROOT) == []


def test_the_layers_are_the_documented_ones():
    """docs/architecture.md's "Three layers" names each layer's modules."""
    text = (pathlib.Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    section = text[text.index("## Three layers"):]
    section = section[:section.index("\n## ")]
    for module, layer in LAYERS.items():
        name = "__init__" if module == "softarray" else module.removeprefix("softarray.")
        assert name.replace(".", "/") in section, module
        assert layer in section, layer


@pytest.mark.parametrize("file, line, expected", [
    # a family importing an adapter
    ("_losses.py", "from ._adapters import dask", "a layer above"),
    # an import inside a function hides no cycle
    ("_declare.py", "def f():\n    from . import _boxes", "import cycle"),
    # the adapter reading a family's private helper, two ways
    ("_adapters/dask.py", "from .._losses import _weighted_share", "private names"),
    ("_adapters/dask.py", "from .. import _losses\nx = _losses._weighted_count",
     "private names"),
    # a new module nobody placed
    ("_new_helpers.py", "import math", "in no layer"),
])
def test_the_checks_can_fail(tmp_path, file, line, expected):
    copy = tmp_path / "softarray"
    shutil.copytree(PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    target = copy / file
    target.write_text((target.read_text() if target.exists() else "") + "\n" + line + "\n")
    problems = layer_problems(copy)
    assert any(expected in p for p in problems), problems


def test_every_array_function_declares_its_split():
    """Every function of the namespace that takes arrays carries the
    declaration the adapters read (softarray._declare)."""
    skip = {"show_config", "get_num_threads", "set_num_threads", "threads", "set_output_cache",
            "TopKGating", "BoxShapeError"}
    missing = [name for name in sa.__all__
               if name not in skip and not hasattr(getattr(sa, name), "declaration")]
    assert missing == []


if __name__ == "__main__":
    # python tests/test_architecture.py [package folder]: the import graph by
    # layer, then every breach of the rules (none on a correct tree).
    import sys
    root = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE_ROOT
    for module, targets in sorted(import_graph(root).items(),
                                  key=lambda item: (ORDER.index(layer_of(item[0]) or "namespace"),
                                                    item[0])):
        print(f"{layer_of(module) or '?':>9}  {module} -> {', '.join(targets) or '-'}")
    print("\n".join(layer_problems(root)) or "no breach")
