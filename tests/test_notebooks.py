"""The analyst notebooks run top to bottom on the fixture agency, and are stored clean."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.analytics.fixture import addr, build, local, people

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nb")
    build(root / "data")
    registration_for_p02(root / "data")
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


def registration_for_p02(data_dir: Path) -> None:
    """P02 also gets a Facebook registration mail: a confirmed violation the policy
    (lien-chieu-2014) lists but never caps, on the first person in roster order."""
    import pyarrow as pa

    from contract.datasets import MESSAGES
    from pipelines.storage import DataDir

    row = {
        "source": "fixture",
        "mailbox": addr("P02"),
        "folder": "INBOX",
        "role": "inbox",
        "uidvalidity": 1,
        "uid": 900,
        "internal_date": local(9),
        "sent_date": local(9),
        "date_source": "header",
        "size": 2048,
        "seen": True,
        "from_addr": "notification@facebookmail.com",
        "to_addrs": [addr("P02")],
        "cc_addrs": [],
        "message_id": "<900@fixture>",
        "address_invalid": False,
    }
    DataDir(data_dir).write_table(
        "messages", "2026-12-01", "part-extra", pa.Table.from_pylist([row], schema=MESSAGES)
    )


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
        assert "storage_used_mb" in text and "e-0" not in text  # MB, not 3.52e-06 GB
        # P01 holds 1 GiB, the others 1 MiB each (fixture.py): in MB, one decimal
        assert "1024.0" in text and "0.0 " not in text.split("storage_used_mb")[1][:400]
    else:
        # It opens on P04, whose PUBLIC_MAIL_FOR_WORK caps the rating, not on P02 (first in
        # roster order), whose registration mail is listed but never counts.
        assert "'employee_id': 'P04'" in text, text
        assert "p04.home@gmail.com" in text and "Hoàn thành khá nhiệm vụ" in text
        assert "'employee_id': 'P02'" not in text


def _points(fig):
    """Every plotted marker of a Figure, in pixels, with the line it belongs to."""
    ax = fig.axes[0]
    out = []
    for line in ax.get_lines():
        if line.get_marker() in (None, "None", ""):
            continue  # the baseline
        for x, y in ax.transData.transform(line.get_xydata()):
            out.append((line.get_label(), x, y, line.get_markersize() * fig.dpi / 72))
    return out


def test_the_trend_chart_keeps_tied_units_apart_and_says_what_it_shows():
    import itertools

    import pandas as pd

    from analytics.notebook import adoption_chart

    units = [f"UBND xã {n}" for n in ("An", "Bình", "Cường", "Dung", "Em", "Giang")]
    adoption = pd.DataFrame(
        [(m, u, 0.2, 1, 5) for m in ("2026-10", "2026-11") for u in units],
        columns=["month", "unit_name", "share_regular", "regular", "mailboxes"],
    )
    fig = adoption_chart(adoption)
    ax = fig.axes[0]
    points = _points(fig)
    assert len(points) == 12  # six units at 20% in two months: twelve points ...
    for (_, x1, y1, size), (_, x2, y2, _) in itertools.combinations(points, 2):
        assert ((x1 - x2) ** 2 + (y1 - y2) ** 2) ** 0.5 >= size  # ... none hiding another
    assert ax.get_title() == "Regular users by unit, 10/2026 to 11/2026"
    assert ax.get_xlabel() == "Month" and "Regular users" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10/2026", "11/2026"]
    assert any("baseline 30%" in t.get_text() for t in ax.texts)
    assert "unit_name" not in ax.get_xlabel() + ax.get_ylabel()


def test_the_trend_chart_of_one_month_is_bars_with_a_note():
    import pandas as pd

    from analytics.notebook import adoption_chart

    units = [f"Phòng {n}" for n in "ABCDEF"]
    adoption = pd.DataFrame(
        [("2026-11", u, 0.2, 1, 5) for u in units],
        columns=["month", "unit_name", "share_regular", "regular", "mailboxes"],
    )
    fig = adoption_chart(adoption)
    ax = fig.axes[0]
    assert len(ax.patches) == 6 and not _points(fig)  # a bar per unit, no column of dots
    assert "11/2026" in ax.get_title() and "one month" in ax.get_title()
    assert ax.get_ylabel() == "Unit" and "Regular users" in ax.get_xlabel()
    assert any("baseline 30%" in t.get_text() for t in ax.texts)


def test_the_ranking_chart_is_titled_with_its_month(config):
    from analytics.notebook import Notebook

    nb = Notebook.open(str(config))
    fig = nb.ranking_chart("2026-11")
    ax = fig.axes[0]
    assert ax.get_title().startswith("Unit ranking, 11/2026")
    assert ax.get_ylabel() == "Unit" and "Regular users" in ax.get_xlabel()
    assert any("baseline 30%" in t.get_text() for t in ax.texts)
    # one bar per ranked unit, as long as its share (independently: the ranking's own %)
    shares = sorted(
        round(v * 100, 1) for v in nb.month("2026-11").unit_ranking["share_regular"].to_pylist()
    )
    assert sorted(round(p.get_width(), 1) for p in ax.patches) == shares
    labels = sorted(t.get_text() for t in ax.texts if "baseline" not in t.get_text())
    assert labels == sorted(f"{s:.0f}%" for s in shares)


def test_storage_is_in_mb_with_one_decimal(config):
    from analytics.notebook import Notebook

    nb = Notebook.open(str(config))
    people = nb.people("2026-11").set_index("employee_id")
    # fixture.py: P01 holds 1 GiB, every other collected mailbox 1 MiB, of 5 GiB
    assert people.loc["P01", "storage_used_mb"] == 1024.0
    assert people.loc["P02", "storage_used_mb"] == 1.0
    assert people.loc["P02", "storage_limit_gb"] == 5.0
    storage = nb.storage("2026-11")
    assert storage.loc["UBND phường Hòa Minh", "used_max_mb"] == 1024.0


def test_counting_lists_only_those_whose_violation_caps_them(config):
    from analytics.notebook import Notebook

    nb = Notebook.open(str(config))
    counting = nb.counting("2026-11")
    assert counting["employee_id"].tolist() == ["P04"]  # P02 and P05: registrations, not capped


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


def test_the_notebook_loads_no_mail_library_and_no_prefect(config):
    """The analyst's notebook opens the config and evaluates a month without importing a
    mail protocol library or Prefect (each costs seconds and may be missing on an
    analyst's machine)."""
    import ast
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from analytics.notebook import Notebook\n"
        f"nb = Notebook.open({str(config)!r})\n"
        "nb.month(nb.latest_month())\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stderr
    loaded = set(ast.literal_eval(done.stdout.strip().splitlines()[-1]))
    assert "analytics" in loaded  # the listing is real
    assert not loaded & {"exchangelib", "prefect", "msal"}
