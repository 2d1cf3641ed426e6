"""report.pdf's child process (analytics/pdf.py): its errors reach the caller, it never
outlives an evaluation, and the evaluating process's environment is left alone."""

from __future__ import annotations

import os

import pytest
from pypdf import PdfReader

from analytics.pdf import PdfError, PdfRenderer, report_pdf

HTML = "<html><body><h1>Báo cáo tháng 11/2026</h1><p>Phòng Nội vụ: 60%</p></body></html>"


def test_the_child_lays_out_the_html_reproducibly(tmp_path):
    before = os.environ.get("SOURCE_DATE_EPOCH")
    first, second = report_pdf(HTML), report_pdf(HTML)
    assert first.startswith(b"%PDF-")
    assert first == second  # fixed dates, identifier and font-subset stamps
    assert os.environ.get("SOURCE_DATE_EPOCH") == before  # set in the child only
    (tmp_path / "r.pdf").write_bytes(first)
    assert "Phòng Nội vụ: 60%" in PdfReader(tmp_path / "r.pdf").pages[0].extract_text()


def test_a_child_that_fails_says_why(tmp_path, monkeypatch):
    # a WeasyPrint that cannot load its libraries, as on a machine without Pango
    (tmp_path / "weasyprint.py").write_text("raise OSError('cannot load library libpango-1.0-0')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with PdfRenderer() as renderer, pytest.raises(PdfError, match=r"libpango-1\.0-0"):
        renderer.render(HTML)


def test_an_evaluation_that_fails_first_leaves_no_child():
    renderer = PdfRenderer()
    child = renderer._child
    assert child is not None and child.poll() is None  # importing WeasyPrint meanwhile
    renderer.close()
    assert child.poll() is not None  # ended and reaped
    with pytest.raises(PdfError, match="submit"):
        renderer.result()


def test_one_report_per_child():
    with PdfRenderer() as renderer:
        renderer.submit(HTML)
        with pytest.raises(PdfError, match="one report"):
            renderer.submit(HTML)
        assert renderer.result().startswith(b"%PDF-")
