"""What the analyst notebooks call: the same evaluation and SQL as the flows, as DataFrames.

>>> nb = Notebook.open()          # MAILUSAGE_CONFIG, else demo-data/mailusage.toml
>>> nb.months()
['2026-10', '2026-11']
>>> nb.month("2026-11").unit_ranking.to_pandas()
>>> nb.adoption_chart()           # a matplotlib Figure, titled, labelled, ready to paste
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from analytics.evaluate import EvaluationInputs, EvaluationResult, evaluate_month
from contract.months import closing_night, month_of_night
from pipelines.config import load_config
from pipelines.evaluate import evaluation_inputs

ROOT = Path(__file__).resolve().parents[1]  # the checkout: demo-data/ is written here
BASELINE = 30.0  # % regular users: the Bình Dương check's figure, drawn on every chart
BASELINE_LABEL = "Bình Dương baseline 30%"
SHARE_AXIS = "Regular users (% of rated mailboxes)"


def month_label(month: str) -> str:
    """``month_label("2026-11")`` -> ``'11/2026'`` (as the report writes a month)."""
    year, number = month.split("-")
    return f"{int(number)}/{year}"


def _share_bars(ax: Any, units: pd.Series, percent: pd.Series) -> None:
    """Horizontal bars of regular-user shares (in %), each labelled, the baseline drawn
    and named, the axes labelled: the one-month adoption chart and the ranking chart."""
    bars = ax.barh(units, percent, color="#4c72b0")
    ax.bar_label(bars, labels=[f"{v:.0f}%" for v in percent], padding=3)
    ax.axvline(BASELINE, linestyle="--", color="grey")
    ax.text(
        BASELINE,
        1.0,
        f" {BASELINE_LABEL}",
        transform=ax.get_xaxis_transform(),
        va="bottom",
        ha="left",
        color="grey",
        fontsize=8,
    )
    ax.set_xlim(0, 100)
    ax.set_xlabel(SHARE_AXIS)
    ax.set_ylabel("Unit")


def adoption_chart(adoption: pd.DataFrame) -> Any:
    """Regular users per unit over months (``adoption`` as :meth:`Notebook.adoption`
    returns it, shares 0-1), as a matplotlib Figure: lines with each unit's points dodged
    sideways, so that units with the same share stay distinct points; with one month,
    bars (a single point per unit is no trend) and a note saying so.
    """
    import matplotlib.pyplot as plt

    if adoption.empty:  # nothing evaluated yet: an empty chart that says so
        adoption = pd.DataFrame(columns=["month", "unit_name", "share_regular"])
    data = adoption.dropna(subset=["share_regular"])
    months = sorted(data["month"].unique())
    units = sorted(data["unit_name"].unique())
    fig, ax = plt.subplots(figsize=(9, max(3.5, 0.35 * len(units) + 1.5)))
    if len(months) <= 1:
        one = data.sort_values(["share_regular", "unit_name"])
        _share_bars(ax, one["unit_name"], one["share_regular"] * 100)
        label = month_label(months[0]) if months else "no month"
        ax.set_title(f"Regular users by unit, {label} (one month collected: no trend yet)", pad=14)
        fig.tight_layout()
        return fig
    # Dodge: each unit keeps its own small x offset, the spread a third of a month.
    spread = 0.36
    offsets = {
        u: (i - (len(units) - 1) / 2) * (spread / max(len(units) - 1, 1))
        for i, u in enumerate(units)
    }
    position = {m: i for i, m in enumerate(months)}
    for unit in units:
        mine = data[data["unit_name"] == unit].sort_values("month")
        x = [position[m] + offsets[unit] for m in mine["month"]]
        ax.plot(x, mine["share_regular"] * 100, marker="o", markersize=5, label=unit)
    ax.axhline(BASELINE, linestyle="--", color="grey")
    ax.text(
        len(months) - 0.5,
        BASELINE,
        f"{BASELINE_LABEL} ",
        va="bottom",
        ha="right",
        color="grey",
        fontsize=8,
    )
    ax.set_xticks(range(len(months)), [month_label(m) for m in months])
    ax.set_xlim(-0.5, len(months) - 0.5)
    ax.set_ylim(0, 100)
    ax.set_xlabel("Month")
    ax.set_ylabel(SHARE_AXIS)
    ax.set_title(f"Regular users by unit, {month_label(months[0])} to {month_label(months[-1])}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="Unit")
    fig.tight_layout()
    return fig


def ranking_chart(ranking: pd.DataFrame, month: str) -> Any:
    """The month's unit ranking as bars (``ranking`` as :meth:`Notebook.ranking` returns
    it, shares in %), each bar labelled with its share, the baseline drawn and named."""
    import matplotlib.pyplot as plt

    data = ranking.dropna(subset=["share_regular"]).sort_values(
        ["share_regular", "unit_name"], ascending=[True, False]
    )
    fig, ax = plt.subplots(figsize=(9, max(3.5, 0.35 * len(data) + 1.5)))
    _share_bars(ax, data["unit_name"], data["share_regular"])
    ax.set_title(f"Unit ranking, {month_label(month)}: regular users", pad=14)
    fig.tight_layout()
    return fig


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

    def _nights(self) -> set[date]:
        return {
            date.fromisoformat(p.name.removeprefix("night="))
            for p in (self.inputs.data_dir / "mailbox_status").glob("night=*")
        }

    def months(self) -> list[str]:
        """Months with collected nights (the night N run covers day N-1), oldest first."""
        return sorted({month_of_night(n) for n in self._nights()})

    def latest_month(self) -> str:
        """The latest month whose last day has been collected (else the latest one)."""
        nights = self._nights()
        complete = [m for m in self.months() if closing_night(m) in nights]
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

    def counting(self, month: str) -> pd.DataFrame:
        """People whose violation counts this month (a confirmed code the policy caps,
        not waived): the ones an appeal or an HR check is about, those with a message as
        evidence first.

        >>> nb.counting("2026-11")[["employee_id", "violation_codes", "max_rating"]]
          employee_id       violation_codes               max_rating
        0         P04  PUBLIC_MAIL_FOR_WORK  Hoàn thành khá nhiệm vụ
        """
        result = self.month(month)
        capped = [r for r in result.hr_rows if r["capped"]]
        v = result.violations.to_pandas()
        v = v[v["confidence"] == "confirmed"]
        with_message = set(v.loc[v["message_id"].notna(), "employee_id"])
        columns = [
            "employee_id",
            "full_name",
            "unit",
            "violation_codes",
            "max_rating",
            "evidence_count",
        ]
        rows = [
            {**{k: r[k] for k in columns}, "message_evidence": r["employee_id"] in with_message}
            for r in capped
        ]
        df = pd.DataFrame(rows, columns=[*columns, "message_evidence"])
        return df.sort_values(
            ["message_evidence", "evidence_count", "employee_id"], ascending=[False, False, True]
        ).reset_index(drop=True)

    def adoption_chart(self) -> Any:
        """:func:`adoption_chart` over every collected month."""
        return adoption_chart(self.adoption())

    def ranking_chart(self, month: str) -> Any:
        """:func:`ranking_chart` of ``month``."""
        return ranking_chart(self.ranking(month), month)

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
        """person_month for reading: storage used in MB and its limit in GB (one decimal:
        a demo mailbox of 0.3 MB is not "0.0 GB"), shares in %, dates in the agency's zone.

        >>> nb.people("2026-11")[["full_name", "storage_used_mb", "storage_pct"]].head(1)
        """
        df = self.month(month).person_month.to_pandas()
        df["storage_used_mb"] = (df["quota_used_bytes"] / 1024**2).round(1)
        df["storage_limit_gb"] = (df["quota_limit_bytes"] / 1024**3).round(1)
        df["storage_pct"] = (df["storage_share"] * 100).round(1)
        df["last_login"] = self._local(df["last_login"])
        return df.drop(columns=["quota_used_bytes", "quota_limit_bytes", "storage_share"])

    def storage(self, month: str) -> pd.DataFrame:
        """Storage per unit (mailboxes that report a quota): MB used, one decimal.

        >>> nb.storage("2026-11").head(1)
                            mailboxes  used_total_mb  used_median_mb  used_max_mb  max_pct
        unit_name
        UBND phường Hòa Minh        5         1028.0             1.0       1024.0     20.0
        """
        df = self.people(month)
        df = df[df["has_mailbox"] & df["storage_used_mb"].notna()]
        return (
            df.groupby("unit_name")
            .agg(
                mailboxes=("employee_id", "count"),
                used_total_mb=("storage_used_mb", "sum"),
                used_median_mb=("storage_used_mb", "median"),
                used_max_mb=("storage_used_mb", "max"),
                max_pct=("storage_pct", "max"),
            )
            .round(1)
        )

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
