"""The files an operator copies: the example config loads, the deployment holds no secret."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipelines.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_loads_and_names_secrets_by_reference():
    cfg = load_config(ROOT / "mailusage.example.toml")
    src = cfg.sources[0]
    assert (src.imap.security, src.imap.auth, src.password.env) == (
        "tls",
        "master-sasl",
        "MAILUSAGE_MASTER_PASSWORD",
    )
    assert cfg.timezone == "Asia/Ho_Chi_Minh"


def test_nightly_deployment_is_0130_ho_chi_minh_and_secret_free():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (dep,) = [d for d in spec["deployments"] if d["name"] == "nightly-collect"]
    assert dep["entrypoint"] == "pipelines/collect.py:collect"
    assert dep["schedules"] == [{"cron": "30 1 * * *", "timezone": "Asia/Ho_Chi_Minh"}]
    text = (ROOT / "prefect.yaml").read_text().lower()
    assert "password" not in text and "secret:" not in text
    assert "job_variables" not in text


def test_monthly_deployment_is_the_1st_at_0600_for_last_month():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (dep,) = [d for d in spec["deployments"] if d["name"] == "monthly-evaluate"]
    assert dep["entrypoint"] == "pipelines/evaluate.py:evaluate"
    assert dep["schedules"] == [{"cron": "0 6 1 * *", "timezone": "Asia/Ho_Chi_Minh"}]
    assert "month" not in dep["parameters"]  # the flow takes last month itself


def test_previous_month_wraps_the_year():
    from contract.months import previous_month

    assert (previous_month("2026-01"), previous_month("2026-11")) == ("2025-12", "2026-10")


def test_reminder_deployment_is_every_day_at_0800_and_secret_free():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (dep,) = [d for d in spec["deployments"] if d["name"] == "daily-remind"]
    assert dep["entrypoint"] == "pipelines/remind.py:remind"
    assert dep["schedules"] == [{"cron": "0 8 * * *", "timezone": "Asia/Ho_Chi_Minh"}]
    assert set(dep["parameters"]) == {"config_path"}  # the flow takes today itself
