"""The analyst notebooks run top to bottom on the fixture agency, and are stored clean."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.analytics.fixture import build, people

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nb")
    build(root / "data")
    people(root)  # roster.csv
    cfg = root / "mailusage.toml"
    cfg.write_text(
        """
[agency]
official_domains = ["danang.gov.vn"]
[roster]
path = "roster.csv"
[[sources]]
host = "127.0.0.1"
master_user = "admin"
password = { env = "UNUSED" }
""",
        encoding="utf-8",
    )
    return cfg


def test_there_are_two_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["usage_overview.ipynb", "violations_review.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    assert all(
        not c.get("outputs") and not c.get("execution_count")
        for c in nb.cells
        if c.cell_type == "code"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, config, monkeypatch):
    monkeypatch.setenv("MAILUSAGE_CONFIG", str(config))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    text = "\n".join(
        str(o.get("data", {}).get("text/plain", "")) + str(o.get("text", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "Error" not in text
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    if path.stem == "usage_overview":
        assert "2026-11" in text and "UBND phường Hòa Minh" in text
        assert len(images) == 2  # both charts inline, as PNG in the executed notebook
        assert "storage_used_gb" in text and "e-0" not in text  # GB, not 3.52e-06
    else:
        assert "PUBLIC_MAIL_FOR_WORK" in text and "p04.home@gmail.com" in text


def test_the_config_is_found_from_the_notebooks_folder(tmp_path, monkeypatch):
    from analytics.notebook import find_config

    monkeypatch.delenv("MAILUSAGE_CONFIG", raising=False)
    (tmp_path / "demo-data").mkdir()
    (tmp_path / "demo-data" / "mailusage.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    assert find_config(tmp_path / "notebooks") == tmp_path / "demo-data" / "mailusage.toml"
    monkeypatch.setenv("MAILUSAGE_CONFIG", str(tmp_path / "nowhere.toml"))
    with pytest.raises(FileNotFoundError, match="MAILUSAGE_CONFIG names"):
        find_config(tmp_path / "notebooks")
