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


@dataclass
class Notebook:
    inputs: EvaluationInputs
    _cache: dict[str, EvaluationResult] = field(default_factory=dict)

    @classmethod
    def open(cls, config: str | None = None) -> Notebook:
        path = config or os.environ.get("MAILUSAGE_CONFIG", "demo-data/mailusage.toml")
        if not Path(path).exists():
            raise FileNotFoundError(
                f"{path} not found: run `make demo` first, or set "
                "MAILUSAGE_CONFIG to your config file"
            )
        return cls(evaluation_inputs(load_config(path)))

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
