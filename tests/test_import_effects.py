"""Importing the product changes nothing: no environment variable, no file.

Every module of the product packages is imported in a fresh interpreter whose working
directory and home are empty directories; the environment it ends with is the one it
started with and both directories are still empty. (Prefect's own import creates its home
directory: PREFECT_HOME points it elsewhere, as the operator's environment may.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipelines.prefect_defaults import DEFAULTS

ROOT = Path(__file__).resolve().parents[1]

IMPORT_ALL = """
import importlib, json, os, pkgutil
before = dict(os.environ)
for package in ("contract", "connectors", "pipelines", "analytics", "mailusage"):
    path = importlib.import_module(package).__path__
    for info in pkgutil.walk_packages(path, package + "."):
        importlib.import_module(info.name)
after = dict(os.environ)
print(json.dumps({k: [before.get(k), after.get(k)] for k in before.keys() | after.keys()
                  if before.get(k) != after.get(k)}))
"""


def test_importing_the_product_sets_no_variable_and_writes_no_file(tmp_path):
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    # Unset what the product sets when it runs (a flow's defaults, the demo's logging
    # level, the report's build date): were an import to set one, it would show.
    for name in [*DEFAULTS, "PREFECT_LOGGING_LEVEL", "SOURCE_DATE_EPOCH"]:
        env.pop(name, None)
    run = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == {}
    assert sorted(p.name for p in cwd.iterdir()) == []
    assert sorted(p.name for p in home.iterdir()) == []
