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


def test_a_pool_lays_out_many_reports_as_one_child_each_would():
    """Two children, four reports: each PDF is byte for byte the one a PdfRenderer of its
    own gives (a child that laid out a report before lays the next out the same)."""
    from analytics.pdf import PdfPool

    pages = [HTML.replace("60%", f"{n}0%") for n in range(4)]
    with PdfPool(2) as pool:
        pending = [pool.submit(html) for html in pages]
        laid_out = [p.result() for p in pending]
    assert laid_out == [report_pdf(html) for html in pages]
    assert len(set(laid_out)) == 4  # each its own report


def test_a_pool_whose_children_fail_says_why(tmp_path, monkeypatch):
    from analytics.pdf import PdfPool

    (tmp_path / "weasyprint.py").write_text("raise OSError('cannot load library libpango-1.0-0')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with PdfPool(2) as pool:
        pending = [pool.submit(HTML) for _ in range(3)]
        for p in pending:
            with pytest.raises(PdfError, match=r"libpango-1\.0-0"):
                p.result()
        children = list(pool._children)
    assert all(c.poll() is not None for c in children)  # none outlives the pool
    with pytest.raises(PdfError, match="closed"):
        pool.submit(HTML)


def test_a_pool_has_a_child_per_core_and_report_at_most():
    from analytics.pdf import POOL_MAX, pool_size

    cores = len(os.sched_getaffinity(0))
    assert pool_size(1) == 1
    assert pool_size(30) == min(cores, POOL_MAX)
    assert 1 <= pool_size(0) <= 1


def test_a_pool_left_by_an_error_ends_its_children_at_once():
    from analytics.pdf import PdfPool

    with pytest.raises(RuntimeError, match="a scope failed"), PdfPool(2) as pool:
        pending = [pool.submit(HTML) for _ in range(6)]
        children = list(pool._children)
        raise RuntimeError("a scope failed")
    assert all(c.poll() is not None for c in children)
    assert all(p.done() for p in pending)  # none left waiting on a child
