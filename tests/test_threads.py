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
print(json.dumps([sa.show_config(False)["openmp_wait_policy"],
                  [os.environ.get(v) for v in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")]]))
"""


def _policy(env_changes, preload=()):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-P", "-c", _REPORT, *preload], capture_output=True,
                         text=True, check=True, env=env, cwd="/").stdout
    return json.loads(out)


def test_brief_spin_when_softarray_loads_openmp_and_environment_restored():
    assert _policy({}) == ["brief spin (GOMP_SPINCOUNT=1000, KMP_BLOCKTIME=0)", [None, None, None]]


@pytest.mark.parametrize("variable, value", [("OMP_WAIT_POLICY", "passive"),
                                             ("GOMP_SPINCOUNT", "300000"),
                                             ("KMP_BLOCKTIME", "200")])
def test_the_users_variable_wins(variable, value):
    policy, seen = _policy({variable: value})
    assert policy == "from the environment"
    # the user's variable stays as set, and softarray adds none of its own
    assert seen == [value if v == variable else None
                    for v in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")]


def test_runtime_loaded_before_softarray_is_reported():
    pytest.importorskip("torch")       # its wheel ships the libgomp.so.1 softarray then shares
    policy, seen = _policy({}, preload=("torch",))
    assert policy.startswith("OpenMP's default") and seen == [None, None, None]
