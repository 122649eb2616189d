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
def _run_with_simd(value, code, text=True):
    """python -c code with SOFTARRAY_SIMD=value (unset for None)."""
    env = dict(os.environ)
    env.pop("SOFTARRAY_SIMD", None)
    if value is not None:
        env["SOFTARRAY_SIMD"] = value
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=text, env=env,
                          cwd="/")


_SIMD_PATH = "import softarray as sa; print(sa.show_config(print_out=False)['simd_path'])"


def test_simd_environment_variable_selects_the_reported_path():
    default = _run_with_simd(None, _SIMD_PATH)
    assert default.returncode == 0, default.stderr
    auto = _run_with_simd("auto", _SIMD_PATH)
    assert auto.stdout == default.stdout
    baseline = _run_with_simd("baseline", _SIMD_PATH)
    assert baseline.returncode == 0, baseline.stderr
    if default.stdout.startswith("x86-64-v3"):
        assert baseline.stdout.strip() == "x86-64 baseline (SSE2), chosen by SOFTARRAY_SIMD=baseline"
    bad = _run_with_simd("avx512", _SIMD_PATH)
    assert bad.returncode != 0 and "SOFTARRAY_SIMD must be one of auto, baseline" in bad.stderr


@pytest.mark.skipif(not _runtime.simd_path().startswith("x86-64-v3"),
                    reason="needs a build with the x86-64-v3 copies on a CPU that runs them")
def test_simd_baseline_reaches_the_kernel_modules():
    """show_config reads _runtime's choice; each kernel module makes its own
    when it loads. Short float32 rows take the AVX2 kernel (FMA in its
    exponential) on the v3 path and the portable one on the baseline path,
    which round some entries differently: differing bits show that the
    softmax module switched too, and both keep the documented float32 bound
    against a float64 softmax written here."""
    code = """if True:
        import sys, numpy as np, softarray as sa
        x = np.random.default_rng(7).standard_normal((4096, 10)).astype(np.float32) * 4
        sys.stdout.buffer.write(sa.softmax(x).tobytes())"""
    runs = {}
    for value in (None, "baseline"):
        run = _run_with_simd(value, code, text=False)
        assert run.returncode == 0, run.stderr.decode()
        runs[value] = np.frombuffer(run.stdout, dtype=np.float32).reshape(4096, 10)
    x = (np.random.default_rng(7).standard_normal((4096, 10)).astype(np.float32) * 4).astype(np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    want = e / e.sum(axis=1, keepdims=True)
    # docs/numerics.md's float32 promise: 8 ulp plus 2 |x - max| ulp.
    ulp = np.spacing(want.astype(np.float32)).astype(np.float64)
    for got in runs.values():
        assert np.all(np.abs(got - want) <= (8 + 2 * np.abs(shifted)) * ulp)
    assert not np.array_equal(runs[None].view(np.uint32), runs["baseline"].view(np.uint32))


@pytest.mark.skipif("AVX-512" not in _runtime.simd_path(),
                    reason="needs a build with the x86-64-v3 copies on a CPU with AVX-512")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_simd_avx2_matches_the_avx512_loops(dtype):
    """SOFTARRAY_SIMD=avx2 runs the AVX2 exponential loops on an AVX-512
    CPU. The AVX-512 exponentials are table-driven (float32: 0.8 ulp against
    the AVX2 polynomial's 0.87; float64: 0.55 against 1.02), so each entry
    differs by an ulp or so, and the sums also in their order: a few ulp. Rows of 4099
    entries take the loops' full vectors and their masked tails, and long
    rows (log_softmax, cross_entropy) the statistics kernels; float64's rows
    include entries far below the maximum, whose exponentials are subnormal
    or zero (the general scaling)."""
    assert _run_with_simd("avx2", _SIMD_PATH).stdout.strip() == "x86-64-v3 (AVX2+FMA), chosen by SOFTARRAY_SIMD=avx2"
    code = f"""if True:
        import sys, numpy as np, softarray as sa
        rng = np.random.default_rng(3)
        x = (rng.standard_normal((64, 4099)) * 6).astype(np.{dtype})
        x[::5, ::97] = -730.0
        x[::7, 1::101] = -np.inf
        y = rng.integers(0, 4099, 64)
        loss, grad = sa.cross_entropy(x, y, reduction="none", return_grad=True)
        for a in (sa.softmax(x), sa.log_softmax(x), sa.logsumexp(x, axis=-1), loss, grad):
            sys.stdout.buffer.write(np.ascontiguousarray(a, dtype=np.{dtype}).tobytes())"""
    runs = {}
    for value in (None, "avx2"):
        run = _run_with_simd(value, code, text=False)
        assert run.returncode == 0, run.stderr.decode()
        runs[value] = np.frombuffer(run.stdout, dtype=dtype)
    n = 64 * 4099
    ends = np.cumsum([n, n, 64, 64, n])
    for got, want in zip(np.split(runs[None], ends[:-1]), np.split(runs["avx2"], ends[:-1])):
        assert np.array_equal(np.isfinite(got), np.isfinite(want)) and np.array_equal(got == 0, want == 0)
        finite = np.isfinite(want)
        got, want = got[finite], want[finite]
        scale = np.maximum(np.abs(want), np.abs(want).max() * 2.0**-10)   # log_softmax's near-zero entries
        # the exponentials an ulp apart and the sums' order (4099 terms in 16
        # or 32 lanes): float64 apart by up to 6 ulp, float32 by 4 (measured)
        assert np.all(np.abs(got - want) <= (6 if dtype == "float32" else 8) * np.spacing(scale.astype(dtype)))


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
    # The test command adds the extras to the build the first one installed:
    # naming the source folder (".[test]") would compile everything again.
    assert "softarray[test]" in commands[1]


def test_ci_runs_the_readme_commands():
    ci = (REPO / ".ci" / "run").read_text()
    assert "README.md" in ci          # .ci/run reads the commands out of the README


def test_every_kernel_header_is_checked_on_its_own():
    # src/meson.build compiles each header alone at configure time (the build
    # fails on one that does not include what it uses); a header missing
    # from its list would escape the check. Templates (*_impl.h) are checked
    # through the family header that includes them, and refuse to be
    # compiled alone.
    src = REPO / "src"
    build = (src / "meson.build").read_text()
    listed = set(re.findall(r"'(_\w+\.h)'", build[build.index("foreach header"):]))
    headers = {p.name for p in src.glob("*.h")}
    templates = {h for h in headers if h.endswith("_impl.h")}
    assert listed == headers - templates
    for template in templates:
        family = template.replace("_impl.h", "_kernels.h")
        assert f'#include "{template}"' in (src / family).read_text()
        assert re.search(r"#if !defined\(SA_T\) \|\| !defined\(SA_SUF\)\n#error", (src / template).read_text())


def test_kernel_entry_points_are_defined_where_grep_finds_them():
    # Every C function a .pyx declares is defined under its own name or, in a
    # type-generic body, as SA_FN(name) with the type suffix dropped; no
    # definition is assembled by token pasting outside src/_simd.h.
    src = REPO / "src"
    headers = {p.name: p.read_text() for p in src.glob("*.h")}
    declared = set()
    for pyx in src.glob("*.pyx"):
        for block in re.findall(r'cdef extern from "_\w+\.h" nogil:\n((?:    .*\n|\n)+)', pyx.read_text()):
            declared |= set(re.findall(r"\b(sa_\w+)\(", block))
    assert len(declared) > 40
    text = "\n".join(headers.values())
    for name in sorted(declared):
        generic = re.sub(r"_f(32|64)$", "", name)
        assert (re.search(rf"\b{name}\b\s*(\(|,)", text) or f"SA_FN({generic})" in text), name
    for name, body in headers.items():
        if name != "_simd.h":
            assert "##" not in body, name
        assert len(re.findall(r"#define SA_CAT\b", body)) == (name == "_simd.h"), name
