"""The tests run against the installed, compiled build, and the build is
what show_config says it is."""
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import softarray as sa
from softarray import _dispatch
from softarray._lib import _runtime, _softmax

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_package_is_installed_not_the_source_tree():
    installed = pathlib.Path(sa.__file__).resolve()
    assert REPO not in installed.parents, f"tests imported the source tree: {installed}"


def test_source_tree_import_says_what_to_do(tmp_path):
    """A checkout's uncompiled softarray/ first on sys.path (python run from
    the repository root) gets an ImportError that says what to run."""
    checkout = tmp_path / "checkout"
    (checkout / "softarray").mkdir(parents=True)
    for source in (REPO / "softarray").rglob("*.py"):
        target = checkout / "softarray" / source.relative_to(REPO / "softarray")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text())
    (checkout / "meson.build").write_text((REPO / "meson.build").read_text())
    # an editable install's import hook would find the build first: drop it
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
            "if 'mesonpy' not in type(f).__module__ and 'editable' not in type(f).__module__]\n"
            "import softarray")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=checkout)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: softarray's compiled kernels are missing"), last
    assert "pip install ." in last and "python -P" in last and str(checkout) in last


def test_compiled_kernels_are_loaded_and_used():
    assert pathlib.Path(_softmax.__file__).suffix in (".so", ".pyd")
    assert sa.show_config(print_out=False)["compiled_kernels"] is True
    x = np.ones((2, 3))
    assert _dispatch.as_compiled_input(x) is x          # NumPy takes the compiled path


def test_show_config_reports_build_facts(capsys):
    info = sa.show_config()
    printed = capsys.readouterr().out
    for key in ("version", "compiled_kernels", "openmp", "openmp_max_threads", "simd_path"):
        assert key in info and key in printed
    assert info["version"] == sa.__version__
    assert info["simd_path"] == _runtime.simd_path() and info["simd_path"]


def test_main_config_flag_prints_configuration():
    out = subprocess.run([sys.executable, "-m", "softarray", "--config"], capture_output=True,
                         text=True, check=True, cwd="/").stdout
    assert "compiled_kernels   : True" in out and "simd_path" in out


def test_main_self_check_passes_and_fails_when_it_should(capsys):
    """python -m softarray's self-check: the figures are the worst
    difference over the allowed one, so a result off by twice the tolerance
    fails and a NaN where SciPy has a number fails."""
    from softarray import __main__ as main

    assert main.self_check()
    printed = capsys.readouterr().out
    assert "FAIL" not in printed and "divided by the difference allowed" in printed
    want = np.array([0.5, 0.25, np.inf, np.nan])
    allowed = 1e-5 * np.abs(want)
    ratio, same = main._error_ratio(want * (1 + 2e-5), want, allowed)
    assert 1.9 < ratio < 2.1 and same
    ratio, same = main._error_ratio(np.array([0.5, np.nan, np.inf, np.nan]), want, allowed)
    assert not ratio <= 1.0
    ratio, same = main._error_ratio(np.array([0.5, 0.25, np.nan, np.nan]), want, allowed)
    assert ratio == 0.0 and not same
    assert not main._report("softmax", "x", 2.0, True, 1e-5)
    assert not main._report("softmax", "x", 0.5, False, 1e-5)


def test_omp_num_threads_is_honoured():
    code = "import softarray as sa; print(sa.get_num_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env, cwd="/").stdout
    assert out.strip() == "1"


@pytest.mark.skipif(not _runtime.openmp_enabled(), reason="built without OpenMP")
def test_threadpoolctl_limits_the_kernels():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    apis = {info["user_api"] for info in threadpoolctl.threadpool_info()}
    assert "openmp" in apis
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert sa.get_num_threads() == 1
        x = np.random.default_rng(0).standard_normal((64, 4096))
        np.testing.assert_allclose(sa.softmax(x).sum(axis=-1), 1.0, rtol=1e-14)


def test_set_num_threads_and_context_manager():
    default = sa.get_num_threads()
    with sa.threads(3):
        assert sa.get_num_threads() == 3
        with sa.threads(1):
            assert sa.get_num_threads() == 1
        assert sa.get_num_threads() == 3
    assert sa.get_num_threads() == default
    sa.set_num_threads(2)
    try:
        assert sa.get_num_threads() == 2
    finally:
        sa.set_num_threads(None)
    assert sa.get_num_threads() == default
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="n_threads"):
            sa.set_num_threads(bad)


def _readme_commands():
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_setup_commands():
    text = (REPO / "README.md").read_text()
    first_block = text.index("```bash")
    assert text[:first_block].count("\n") <= 2            # only the title comes before
    commands = _readme_commands()
    assert len(commands) == 2
    assert "-m softarray" in commands[0]
    assert "[test]" in commands[1] and "pytest" in commands[1]


def test_ci_runs_the_readme_commands():
    ci = (REPO / ".ci" / "run").read_text()
    assert "README.md" in ci          # .ci/run reads the commands out of the README
