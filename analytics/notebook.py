"""What the analyst notebooks call: the same evaluation and SQL as the flows, as DataFrames.

>>> nb = Notebook.open()          # MAILUSAGE_CONFIG, else demo-data/mailusage.toml
>>> nb.months()
['2026-10', '2026-11']
>>> nb.month("2026-11").unit_ranking.to_pandas()
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from analytics.evaluate import EvaluationInputs, EvaluationResult, evaluate_month
from pipelines.config import load_config
from pipelines.evaluate import evaluation_inputs

ROOT = Path(__file__).resolve().parents[1]  # the checkout: demo-data/ is written here


def find_config(start: Path | None = None) -> Path:
    """The config a notebook reads: $MAILUSAGE_CONFIG, else the nearest
    ``mailusage.toml`` or ``demo-data/mailusage.toml`` from the working directory upwards
    (a notebook runs in ``notebooks/``), else the checkout's demo.

    >>> find_config(Path("notebooks"))
    PosixPath('/opt/mailusage/demo-data/mailusage.toml')
    """
    env = os.environ.get("MAILUSAGE_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"MAILUSAGE_CONFIG names {path}, which does not exist")
        return path.resolve()
    here = (start or Path.cwd()).resolve()
    looked = []
    for folder in (here, *here.parents, ROOT):
        for candidate in (folder / "mailusage.toml", folder / "demo-data" / "mailusage.toml"):
            if candidate.exists():
                return candidate
            looked.append(str(candidate))
    raise FileNotFoundError(
        "no mailusage.toml found (looked in " + ", ".join(looked[:4]) + " …): run "
        "`make demo` first, or set MAILUSAGE_CONFIG to your config file"
    )


@dataclass
class Notebook:
    inputs: EvaluationInputs
    _cache: dict[str, EvaluationResult] = field(default_factory=dict)

    @classmethod
    def open(cls, config: str | None = None) -> Notebook:
        """The evaluation inputs of ``config``, or of :func:`find_config`'s answer."""
        path = Path(config) if config else find_config()
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `make demo` first")
        return cls(evaluation_inputs(load_config(str(path))))

    def months(self) -> list[str]:
        """Months with collected nights (the night N run covers day N-1), oldest first."""
        nights = (
            p.name.removeprefix("night=")
            for p in (self.inputs.data_dir / "mailbox_status").glob("night=*")
        )
        return sorted(
            {(date.fromisoformat(n) - timedelta(days=1)).strftime("%Y-%m") for n in nights}
        )

    def latest_month(self) -> str:
        """The latest month whose last day has been collected (else the latest one)."""
        nights = {
            date.fromisoformat(p.name.removeprefix("night="))
            for p in (self.inputs.data_dir / "mailbox_status").glob("night=*")
        }
        complete = [
            m
            for m in self.months()
            if any((n - timedelta(days=1)).strftime("%Y-%m") == m and n.day == 1 for n in nights)
        ]
        months = complete or self.months()
        if not months:
            raise LookupError("nothing collected yet")
        return months[-1]

    def month(self, month: str) -> EvaluationResult:
        if month not in self._cache:
            self._cache[month] = evaluate_month(self.inputs, month)
        return self._cache[month]

    def adoption(self) -> pd.DataFrame:
        """Share of regular users per unit and month (the ranking's own figures)."""
        frames = []
        for m in self.months():
            df = self.month(m).unit_ranking.to_pandas()
            df["month"] = m
            frames.append(df[["month", "unit_name", "share_regular", "regular", "mailboxes"]])
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def violators(self, month: str) -> pd.DataFrame:
        """People per violation code (confirmed), with their unit."""
        v = self.month(month).violations.to_pandas()
        v = v[v["confidence"] == "confirmed"]
        units = {p.employee_id: p.unit_name for p in self.inputs.people}
        v["unit"] = v["employee_id"].map(units)
        return v.groupby(["code", "unit"])["employee_id"].nunique().rename("people").reset_index()

    def evidence(self, month: str, employee_id: str) -> pd.DataFrame:
        v = self.month(month).violations.to_pandas()
        return v[v["employee_id"] == employee_id].reset_index(drop=True)

    def person(self, month: str, employee_id: str) -> dict[str, Any]:
        rows = [
            r for r in self.month(month).person_month.to_pylist() if r["employee_id"] == employee_id
        ]
        if not rows:
            raise KeyError(f"{employee_id} is not in the roster")
        return dict(rows[0])

    # -- as people read them -------------------------------------------------------------

    def people(self, month: str) -> pd.DataFrame:
        """person_month for reading: storage in GB, shares in %, dates in the agency's zone.

        >>> nb.people("2026-11")[["full_name", "storage_used_gb", "storage_pct"]].head(1)
        """
        df = self.month(month).person_month.to_pandas()
        df["storage_used_gb"] = (df["quota_used_bytes"] / 1024**3).round(2)
        df["storage_limit_gb"] = (df["quota_limit_bytes"] / 1024**3).round(2)
        df["storage_pct"] = (df["storage_share"] * 100).round(1)
        df["last_login"] = self._local(df["last_login"])
        return df.drop(columns=["quota_used_bytes", "quota_limit_bytes", "storage_share"])

    def ranking(self, month: str) -> pd.DataFrame:
        """The unit ranking with its shares in % (one decimal)."""
        df = self.month(month).unit_ranking.to_pandas()
        for col in [c for c in df.columns if c.startswith("share_")]:
            df[col] = (df[col] * 100).round(1)
        return df

    def evidence_local(self, month: str, employee_id: str) -> pd.DataFrame:
        """One person's evidence with integer UIDs and times in the agency's zone."""
        df = self.evidence(month, employee_id)
        df["uid"] = df["uid"].astype("Int64")  # a missing UID stays missing, not 1.0
        df["evidence_date"] = self._local(df["evidence_date"])
        return df

    def _local(self, column: pd.Series) -> pd.Series:
        if column.dt.tz is None:
            column = column.dt.tz_localize("UTC")
        return column.dt.tz_convert(self.inputs.timezone)
