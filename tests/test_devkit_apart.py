"""The product never loads devkit/ (the fakes): only `mailusage demo` and the tests do.

Each product package is imported whole in a fresh interpreter, as an operator's `collect`,
`evaluate` or `doctor` (or a Prefect worker running the flows) would load it, and the
modules it loaded are listed. The demo is the one command allowed to load devkit, and
doubles as the check that the listing sees it when it is there.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Every module of the package, then the devkit modules that came with them.
LOADED = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
skip = set(sys.argv[2:])
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    if info.name not in skip:
        importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m == "devkit" or m.startswith("devkit."))))
"""


def devkit_loaded(package: str, *skip: str) -> list[str]:
    run = subprocess.run(
        [sys.executable, "-c", LOADED, package, *skip],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    loaded: list[str] = json.loads(run.stdout.splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    ("package", "skip"),
    [
        # cli (collect, evaluate, forget-night, compact), doctor, probe: all but the demo
        ("mailusage", ("mailusage.demo",)),
        ("pipelines", ()),
        ("analytics", ()),
        ("connectors", ()),
        ("contract", ()),
    ],
)
def test_product_never_imports_devkit(package, skip):
    assert devkit_loaded(package, *skip) == []


def test_the_demo_does_load_devkit():
    """The same listing sees devkit when a module does import it (so the test above can fail)."""
    assert "devkit.dovecot" in devkit_loaded("mailusage")


def test_the_demo_does_not_import_the_cli_back():
    """`mailusage demo` hands the demo its ``main``: no circle cli -> demo -> cli."""
    tree = ast.parse((ROOT / "mailusage" / "demo.py").read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "mailusage.cli" not in imported
    assert "mailusage" not in imported  # `from mailusage import cli`
