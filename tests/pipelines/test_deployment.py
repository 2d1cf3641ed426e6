"""The deployments as an operator runs them (README, "Scheduled nights"): a real Prefect
server on loopback, the `mailusage` process work pool, `prefect deploy --all` from the
committed prefect.yaml, the scheduler's upcoming runs at 01:30 every day, at 06:00 on the
1st and the reminders' at 08:00 every day (Asia/Ho_Chi_Minh), and a worker that runs the
nightly collection against the test Dovecot until its data lands.

Why in `make test`: the pins in pyproject.toml (fastapi < 0.151, SQLAlchemy 2.0) exist
because this path broke with newer releases while every in-process flow test still passed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import httpx
import pytest

from devkit.dovecot import LocalDovecot
from tests.conftest import MASTER_PASSWORD
from tests.groundtruth import seed_regular, truth
from tests.pipelines.test_flow_and_cli import write_setup

ROOT = Path(__file__).resolve().parents[2]
PREFECT = Path(sys.executable).with_name("prefect")
HCM = ZoneInfo("Asia/Ho_Chi_Minh")
NIGHT = "2026-11-20"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prefect(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    done = subprocess.run(
        [str(PREFECT), *args],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _spawn(args: list[str], env: dict[str, str], cwd: Path, log: Any) -> subprocess.Popen[bytes]:
    """A long-running `prefect` command in its own process group, its output to ``log``."""
    return subprocess.Popen(
        [str(PREFECT), *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`prefect server start` on 127.0.0.1 with its own PREFECT_HOME; the env to reach it."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_UI_ENABLED": "false",
        # the scheduler looks every 2 s, not every 60 s, so the test need not wait
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    }
    log = (home / "server.log").open("wb")
    proc = _spawn(["server", "start", "--host", "127.0.0.1", "--port", str(port)], env, home, log)
    try:
        deadline = time.monotonic() + 150
        while True:
            assert proc.poll() is None, (home / "server.log").read_text()[-3000:]
            try:
                if httpx.get(env["PREFECT_API_URL"] + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (home / "server.log").read_text()[-3000:]
            time.sleep(0.5)
        yield env
    finally:
        _stop(proc)
        log.close()
    server_log = (home / "server.log").read_text(errors="replace")
    # SQLAlchemy 2.1 made the scheduler fail this way while the API still answered.
    assert "InvalidRequestError" not in server_log, server_log[-3000:]


def _api(env: dict[str, str], path: str, body: dict[str, Any] | None = None) -> Any:
    response = httpx.post(env["PREFECT_API_URL"] + path, json=body or {}, timeout=10)
    assert response.status_code < 300, response.text
    return response.json()


def _scheduled(env: dict[str, str], deployment_id: str) -> list[datetime]:
    runs = _api(
        env,
        "/flow_runs/filter",
        {
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
            "deployments": {"id": {"any_": [deployment_id]}},
            "sort": "EXPECTED_START_TIME_ASC",
        },
    )
    return [datetime.fromisoformat(r["expected_start_time"]).astimezone(HCM) for r in runs]


def _deploy_file(tmp_path: Path, config: str) -> Path:
    """The committed prefect.yaml with only the operator's two paths filled in: the
    checkout the worker runs from, and the config file."""
    text = (ROOT / "prefect.yaml").read_text(encoding="utf-8")
    assert text.count("directory: /opt/mailusage\n") == 1
    assert text.count("config_path: /etc/mailusage/mailusage.toml\n") == 3  # one per deployment
    text = text.replace("/opt/mailusage", str(ROOT)).replace(
        "/etc/mailusage/mailusage.toml", config
    )
    path = tmp_path / "prefect.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_deploy_schedule_and_a_worker_run_land_the_night(
    server: dict[str, str], dovecot: LocalDovecot, tmp_path: Path
) -> None:
    people = ["trien.khai@danang.gov.vn", "lich.dem@danang.gov.vn"]
    for i, mailbox in enumerate(people):
        seed_regular(dovecot, mailbox, 7 + i, seed=70 + i)
    roster = "".join(f"NV{i},Cán bộ {i},{m},VP,Văn phòng,no\n" for i, m in enumerate(people))
    config = write_setup(tmp_path, dovecot, roster, password_env="MU_DEPLOY_MASTER")
    env = server

    _prefect(env, "work-pool", "create", "mailusage", "--type", "process")
    out = _prefect(env, "deploy", "--all", "--prefect-file", str(_deploy_file(tmp_path, config)))
    assert "nightly-collect" in out and "monthly-evaluate" in out and "daily-remind" in out

    deployments = {d["name"]: d for d in _api(env, "/deployments/filter")}
    assert set(deployments) == {"nightly-collect", "monthly-evaluate", "daily-remind"}
    for d in deployments.values():
        assert d["work_pool_name"] == "mailusage"
        assert d["parameters"] == {"config_path": config}
        assert MASTER_PASSWORD not in str(d)  # the secret is the worker's, by reference

    # The scheduler fills in the upcoming runs at the agency's local times.
    deadline = time.monotonic() + 60
    while True:
        nightly = _scheduled(env, deployments["nightly-collect"]["id"])
        monthly = _scheduled(env, deployments["monthly-evaluate"]["id"])
        daily = _scheduled(env, deployments["daily-remind"]["id"])
        if len(nightly) >= 3 and len(monthly) >= 3 and len(daily) >= 3:
            break
        assert time.monotonic() < deadline, f"no scheduled runs: {nightly}, {monthly}, {daily}"
        time.sleep(1)
    now = datetime.now(HCM)
    assert all(t > now for t in nightly + monthly + daily)
    # reminders: every morning at 08:00 (the flow itself keeps to reminders.days)
    assert {(t.hour, t.minute) for t in daily} == {(8, 0)}
    assert all((b - a).days == 1 for a, b in pairwise([t.date() for t in daily]))
    assert {(t.hour, t.minute) for t in nightly} == {(1, 30)}
    days = [t.date() for t in nightly]
    assert all((b - a).days == 1 for a, b in pairwise(days))  # every night
    assert {(t.day, t.hour, t.minute) for t in monthly} == {(1, 6, 0)}
    assert len({(t.year, t.month) for t in monthly}) == len(monthly)  # once a month

    # An operator's manual run of the nightly deployment, picked up by a worker.
    out = _prefect(env, "deployment", "run", "collect/nightly-collect", "--param", f"night={NIGHT}")
    worker_env = {**env, "MU_DEPLOY_MASTER": MASTER_PASSWORD}  # the secret lives on the worker
    log = (tmp_path / "worker.log").open("wb")
    worker = _spawn(
        ["worker", "start", "--pool", "mailusage", "--type", "process"], worker_env, tmp_path, log
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            runs = _api(
                env,
                "/flow_runs/filter",
                {"deployments": {"id": {"any_": [deployments["nightly-collect"]["id"]]}}},
            )
            mine = [r for r in runs if r["parameters"].get("night") == NIGHT]
            assert len(mine) == 1
            state = mine[0]["state"]["type"]
            if state in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
                break
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(1)
    finally:
        _stop(worker)
        log.close()
    worker_log = (tmp_path / "worker.log").read_text(errors="replace")
    assert state == "COMPLETED", worker_log[-3000:]
    assert MASTER_PASSWORD not in worker_log

    # The night's data landed where the config says, message for message.
    stored = duckdb.execute(
        "select mailbox, count(*) from read_parquet($p, hive_partitioning = true) "
        "group by mailbox order by mailbox",
        parameters={"p": str(tmp_path / "data" / "messages" / f"night={NIGHT}" / "*.parquet")},
    ).fetchall()
    expected = sorted((m, len(truth(dovecot, m, ["INBOX", "Sent"]))) for m in people)
    assert stored == expected
