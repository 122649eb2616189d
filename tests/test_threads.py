"""OpenMP's wait policy as softarray loads it (docs/threads.md, "A busy
machine"). Each case runs in a fresh interpreter, since OpenMP reads its
environment once, when it is loaded."""
import json
import os
import subprocess
import sys

import pytest

from softarray._lib import _runtime

pytestmark = pytest.mark.skipif(not _runtime.openmp_enabled(), reason="built without OpenMP")

_REPORT = """
import json, os, sys
for name in sys.argv[1:]:
    __import__(name)
import softarray as sa
print(json.dumps([sa.show_config(False)["openmp_wait_policy"], os.environ.get("OMP_WAIT_POLICY")]))
"""


def _policy(env_changes, preload=()):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-P", "-c", _REPORT, *preload], capture_output=True,
                         text=True, check=True, env=env, cwd="/").stdout
    return json.loads(out)


def test_passive_when_softarray_loads_openmp_and_environment_restored():
    assert _policy({}) == ["passive", None]


@pytest.mark.parametrize("variable, value", [("OMP_WAIT_POLICY", "active"),
                                             ("GOMP_SPINCOUNT", "1000")])
def test_the_users_variable_wins(variable, value):
    policy, omp_wait_policy = _policy({variable: value})
    assert policy == "from the environment"
    assert omp_wait_policy == (value if variable == "OMP_WAIT_POLICY" else None)


def test_runtime_loaded_before_softarray_is_reported():
    pytest.importorskip("torch")       # its wheel ships the libgomp.so.1 softarray then shares
    policy, omp_wait_policy = _policy({}, preload=("torch",))
    assert policy.startswith("OpenMP's default") and omp_wait_policy is None
