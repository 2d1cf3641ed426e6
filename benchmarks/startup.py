"""How long the CLI takes to start and to evaluate the demo's month, and how much of it is
imports (``python -X importtime``): one or two source trees, run alternately in one run.

    python benchmarks/startup.py --config demo-data/mailusage.toml --month 2026-11 \
        [--before /tmp/old-checkout] [--analyst DIR] [--runs 5]

``--analyst DIR``: a directory put on PYTHONPATH holding ``rfc3987-syntax`` (``pip install
--target DIR rfc3987-syntax``), which the `analyst` extra brings in through JupyterLab's
jsonschema[format-nongpl]: the same runs again with it. Prints a Markdown table (min and
median of the runs) for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imports(stderr: str) -> tuple[float, set[str], dict[str, float]]:
    """Seconds of imports (top-level entries' cumulative time), modules, and per module."""
    total, modules, each = 0.0, set(), {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        if not name.startswith("  "):  # a top-level import (children are indented)
            total += int(cumulative) / 1e6
        each[name.strip()] = int(cumulative) / 1e6
        modules.add(name.strip())
    return total, modules, each


def once(tree: Path, args: list[str], extra: str | None) -> dict[str, object]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), extra) if p)
    env.pop("PREFECT_API_URL", None)
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mailusage.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,  # `-m` puts the working directory first on sys.path: the tree's own
    )
    wall = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(args)} failed:\n{run.stderr[-2000:]}")
    total, modules, each = imports(run.stderr)
    return {
        "wall": wall,
        "imports": total,
        "prefect": "prefect" in modules,
        "pandas": "pandas" in modules,  # pyarrow imports it when handed a Python value
        "weasyprint": each.get("weasyprint", 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--month", required=True)
    parser.add_argument("--before", type=Path, help="an older checkout, run alternately")
    parser.add_argument("--analyst", help="PYTHONPATH dir with rfc3987-syntax installed")
    parser.add_argument("--runs", type=int, default=5)
    a = parser.parse_args()
    trees = [("before", a.before)] if a.before else []
    trees.append(("after", ROOT))
    commands = {
        "evaluate --help": ["evaluate", "--help"],
        f"evaluate --month {a.month}": [
            "evaluate",
            "--config",
            str(Path(a.config).resolve()),
            "--month",
            a.month,
        ],
    }
    extras = [("", None)] + ([(" + analyst extra", a.analyst)] if a.analyst else [])
    rows: dict[tuple[str, str, str], list[dict[str, object]]] = {}
    for _ in range(a.runs):  # alternate trees so a busy moment hits both alike
        for label, command in commands.items():
            for extra_label, extra in extras:
                for name, tree in trees:
                    key = (label + extra_label, name, str(tree))
                    rows.setdefault(key, []).append(once(tree, command, extra))
    print(
        "| command | tree | wall s (min / median) | imports s (min / median) | "
        "of which weasyprint s | Prefect imported | pandas imported |"
    )
    print("|---|---|---|---|---|---|---|")
    for (label, name, _), runs in rows.items():
        wall = [float(r["wall"]) for r in runs]
        imp = [float(r["imports"]) for r in runs]
        weasy = min(float(r["weasyprint"]) for r in runs)
        print(
            f"| `{label}` | {name} | {min(wall):.2f} / {statistics.median(wall):.2f} | "
            f"{min(imp):.2f} / {statistics.median(imp):.2f} | {weasy:.2f} | "
            f"{'yes' if any(r['prefect'] for r in runs) else 'no'} | "
            f"{'yes' if any(r['pandas'] for r in runs) else 'no'} |"
        )


if __name__ == "__main__":
    main()
