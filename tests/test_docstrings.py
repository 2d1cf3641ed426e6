"""Every docstring example in the product runs and shows what it says it shows.

Each product module's examples are run with doctest (``...`` stands for the rest of a long
value, whitespace is normalised). A few examples are sketches of a call in its setting — a
live server, an operator's config, a data directory, today's date — and cannot run here:
SKETCHES names each one with what it needs, and fails once a name no longer has examples, so
the list cannot outlive them.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import pytest

PACKAGES = ("contract", "connectors", "pipelines", "analytics", "mailusage")

SKETCHES = {
    # a live server and its password
    "connectors.ews": "an Exchange server",
    "connectors.graph": "an Entra ID tenant",
    "connectors.imap": "an IMAP server",
    "connectors.imap_wire": "an IMAP server",
    "connectors.sieve": "a ManageSieve server",
    "connectors.zimbra": "a Zimbra admin endpoint",
    "connectors.zimbra.ZimbraAdmin.quota": "a Zimbra admin endpoint",
    "pipelines.mailer": "an SMTP submission server",
    # an operator's files
    "connectors.contacts": "a message's raw bytes",
    "connectors.logfiles": "a log file and its rotations",
    "pipelines.config": "a mailusage.toml",
    "pipelines.delivery": "a mailusage.toml with [delivery]",
    "pipelines.delivery.bundles": "a loaded config",
    "pipelines.outbox": "a data directory",
    "pipelines.remind": "a mailusage.toml with [reminders] and a collected month",
    "pipelines.remind.unit_heads": "a loaded config and its roster",
    "analytics.standing": "a month's inputs and a collected data directory",
    "pipelines.secrets.secret_problems": "a loaded config",
    "pipelines.secrets.export_key": "a loaded config",
    "pipelines.night.skipped_behind": "a night's result",
    "pipelines.storage.DataDir.stored_rows": "a data directory",
    "pipelines.storage.DataDir.plan_forget": "a data directory",
    "analytics.evaluate": "a month's inputs",
    "analytics.scopes": "a month's inputs and its evaluation",
    "analytics.export": "a month's inputs and a collected data directory",
    "pipelines.evaluate.month_bundles": "a mailusage.toml with [[scopes]]",
    "analytics.queries": "a data directory and a roster table",
    "analytics.workbook": "a rated table",
    "analytics.notebook": "a collected data directory",
    "analytics.notebook.find_config": "a mailusage.toml",
    "analytics.notebook.Notebook.counting": "a collected data directory",
    "analytics.notebook.Notebook.people": "a collected data directory",
    "analytics.notebook.Notebook.storage": "a collected data directory",
    "mailusage.doctor": "a mailusage.toml",
    # the clock, the environment, the install
    "pipelines.night.preflight": "today's date (a night after today)",
    "pipelines.evaluate.check_ended": "today's date (a month not ended)",
    "mailusage.cli._prefect_api": "PREFECT_API_URL set",
    "mailusage.demo.notebook_hint": "where the virtualenv and checkout are",
}


def product_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        path = importlib.import_module(package).__path__
        names += [package, *(m.name for m in pkgutil.walk_packages(path, package + "."))]
    return names


def examples(module: str) -> list[doctest.DocTest]:
    tests = doctest.DocTestFinder().find(importlib.import_module(module))
    return [t for t in tests if t.examples]


@pytest.mark.parametrize("module", product_modules())
def test_docstring_examples_run(module):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    for test in examples(module):
        if test.name not in SKETCHES:
            runner.run(test, out=report.write)
    assert runner.failures == 0, report.getvalue()


def test_every_sketch_is_still_a_docstring_with_examples():
    named = {t.name for module in product_modules() for t in examples(module)}
    assert sorted(set(SKETCHES) - named) == []
