"""report.pdf laid out in a process of its own, started when an evaluation starts.

WeasyPrint is the slowest part of evaluating a small agency's month: its import alone
takes ~0.36 s here and the layout as long again. A child process imports it on the
second core while DuckDB computes the month in this one, then lays out the HTML while
this process writes the CSVs and the workbook (benchmarks/README.md, "Start-up"). The
child also keeps SOURCE_DATE_EPOCH, which makes the PDF's bytes reproducible, out of the
evaluating process's environment.

    with PdfRenderer() as pdf:        # the child starts importing WeasyPrint now
        ...                           # the month's SQL, then the report's HTML
        pdf.submit(html)              # laid out in the child ...
        ...                           # ... while the CSVs and the workbook are written
        data = pdf.result()           # b'%PDF-1.7\\n...'

Many reports (a province's scopes, analytics/scopes.py) go to a :class:`PdfPool`: a few
children, each importing WeasyPrint once and laying out report after report, side by side
on the machine's cores, while this process cuts and writes the next scope's files::

    with PdfPool() as pool:
        pending = [pool.submit(html) for html in reports]   # laid out two at a time ...
        data = [p.result() for p in pending]                # ... each as a child alone would

This module imports nothing but the standard library at its top: the child runs it
(``python -m analytics.pdf``) and should spend its time on WeasyPrint alone.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import IO

PDF_DATE = "2000-01-01T00:00:00Z"
# fontTools stamps each embedded font subset with the time unless SOURCE_DATE_EPOCH (the
# reproducible-builds convention) says otherwise: the same month gives the same bytes
SOURCE_DATE_EPOCH = "946684800"  # 2000-01-01
PDF_IDENTIFIER = b"mailusage-report"
ERROR_TAIL = 2000  # characters of the child's stderr quoted in an error
POOL_MAX = 4  # children of a PdfPool at most: ~250 MiB each for a province's report
DONE = b"done\n"  # what the child writes after each PDF it has written


class PdfError(RuntimeError):
    """report.pdf could not be laid out (the child's own error is in the message)."""


def layout(html: str) -> bytes:
    """The report as an A4 PDF, laid out by WeasyPrint from the same HTML (its print
    styles, after Decree 30/2020 Appendix I: A4, margins 20/15/20/30 mm, Times New Roman
    or its metric twin Liberation Serif at 13 pt, page numbers centred in the top margin
    from page 2 on, table headers repeated on every page, no chart split across pages).
    Fixed dates and identifier; run where SOURCE_DATE_EPOCH is set (the child), the same
    HTML gives the same bytes."""
    from weasyprint import HTML

    document = HTML(string=html).render()
    document.metadata.created = PDF_DATE
    document.metadata.modified = PDF_DATE
    return bytes(document.write_pdf(pdf_identifier=PDF_IDENTIFIER))


class PdfRenderer:
    """One child process that lays out one report; see the module's docstring."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="mailusage-pdf-")
        self._html = Path(self._dir.name) / "report.html"
        self._pdf = Path(self._dir.name) / "report.pdf"
        self._child: subprocess.Popen[bytes] | None = _start(subprocess.DEVNULL, subprocess.PIPE)
        self._submitted = False

    def submit(self, html: str) -> None:
        """Hand the HTML to the child, which lays it out while the caller goes on."""
        if self._child is None or self._submitted:
            raise PdfError("a PdfRenderer lays out one report")
        self._html.write_text(html, encoding="utf-8")
        assert self._child.stdin is not None
        self._child.stdin.write(f"{self._html}\t{self._pdf}\n".encode())
        self._child.stdin.close()
        self._submitted = True

    def result(self) -> bytes:
        """The PDF's bytes, once the child has written them."""
        if self._child is None or not self._submitted:
            raise PdfError("submit the report's HTML first")
        child, self._child = self._child, None
        assert child.stderr is not None
        err = child.stderr.read()  # to its end: the child has exited or closed it
        code = child.wait()
        child.stderr.close()
        if code != 0:
            tail = err.decode("utf-8", "replace")[-ERROR_TAIL:]
            raise PdfError(f"report.pdf could not be laid out (exit {code}):\n{tail}")
        return self._pdf.read_bytes()

    def render(self, html: str) -> bytes:
        """submit and result in one: the PDF of ``html``."""
        self.submit(html)
        return self.result()

    def close(self) -> None:
        """End the child if it is still running (an evaluation that failed before its
        report) and remove the temporary files."""
        if self._child is not None:
            child, self._child = self._child, None
            child.kill()
            child.wait()
            for pipe in (child.stdin, child.stderr):
                if pipe is not None:
                    pipe.close()
        self._dir.cleanup()

    def __enter__(self) -> PdfRenderer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def _start(stdout: int, stderr: int | IO[bytes]) -> subprocess.Popen[bytes]:
    """A child (:func:`_child`) that starts importing WeasyPrint at once."""
    env = dict(os.environ)
    env["SOURCE_DATE_EPOCH"] = env.get("SOURCE_DATE_EPOCH") or SOURCE_DATE_EPOCH
    # this checkout's packages, also when the parent found them through its cwd
    here = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "analytics.pdf"],  # -P: not the cwd first
        stdin=subprocess.PIPE,
        stdout=stdout,
        stderr=stderr,
        env=env,
    )


def pool_size(reports: int) -> int:
    """How many children lay out ``reports`` reports: one per core this process may run on,
    at most :data:`POOL_MAX` and at most one per report.

    >>> pool_size(1)
    1
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(reports, cores or 1, POOL_MAX))


class PdfPool:
    """``size`` children laying out many reports, each child one report at a time and
    WeasyPrint imported once per child (see the module's docstring). A report's bytes are
    those one :class:`PdfRenderer` would give (the same HTML, the same fixed stamps)."""

    def __init__(self, size: int = 2) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="mailusage-pdf-")
        self._jobs: queue.SimpleQueue[tuple[int, Future[bytes]] | None] = queue.SimpleQueue()
        self._count = 0
        self._closed = False
        self._logs: list[IO[bytes]] = []
        self._children: list[subprocess.Popen[bytes]] = []
        self._threads: list[threading.Thread] = []
        for n in range(max(1, size)):
            # stderr to a file: a pipe nobody reads while reports are laid out would fill
            log = open(Path(self._dir.name) / f"child-{n}.log", "w+b")  # noqa: SIM115
            self._logs.append(log)
            child = _start(subprocess.PIPE, log)
            self._children.append(child)
            thread = threading.Thread(target=self._serve, args=(child, log), daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, html: str) -> Future[bytes]:
        """Queue one report's HTML; the future's result is its PDF's bytes (or PdfError)."""
        if self._closed:
            raise PdfError("the PdfPool is closed")
        self._count += 1
        (Path(self._dir.name) / f"{self._count}.html").write_text(html, encoding="utf-8")
        future: Future[bytes] = Future()
        self._jobs.put((self._count, future))
        return future

    def _serve(self, child: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        """One child's thread: hand it each queued report in turn, wait for it, read it."""
        assert child.stdin is not None and child.stdout is not None
        broken: PdfError | None = None
        while (job := self._jobs.get()) is not None:
            n, future = job
            if broken is None:
                html, pdf = (Path(self._dir.name) / f"{n}.{ext}" for ext in ("html", "pdf"))
                try:
                    child.stdin.write(f"{html}\t{pdf}\n".encode())
                    child.stdin.flush()
                    answer = child.stdout.readline()
                except OSError:
                    answer = b""
                if answer == DONE:
                    future.set_result(pdf.read_bytes())
                    continue
                code = child.wait()
                log.seek(0)
                tail = log.read().decode("utf-8", "replace")[-ERROR_TAIL:]
                broken = PdfError(f"report.pdf could not be laid out (exit {code}):\n{tail}")
            future.set_exception(broken)

    def close(self, abandon: bool = False) -> None:
        """Let the children finish what was submitted (``abandon``: end them at once, an
        evaluation that failed), end them and remove the files."""
        if self._closed:
            return
        self._closed = True
        if abandon:
            for child in self._children:
                child.kill()  # its thread reads the end of its output: the rest fail
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        for child in self._children:
            for pipe in (child.stdin, child.stdout):
                # the child reads an end of input and exits; a child that died (or was
                # ended) leaves a line unsent in the buffer, which close cannot flush
                if pipe is not None:
                    with contextlib.suppress(BrokenPipeError):
                        pipe.close()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for log in self._logs:
            log.close()
        self._dir.cleanup()

    def __enter__(self) -> PdfPool:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close(abandon=kind is not None)


def report_pdf(html: str) -> bytes:
    """The PDF of one report's HTML, laid out in a child process (a caller that has
    nothing to do meanwhile, e.g. a benchmark)."""
    with PdfRenderer() as renderer:
        return renderer.render(html)


def _child() -> None:
    """The child's side: import WeasyPrint at once, then lay out the file named on each
    line the parent writes, answering :data:`DONE` after each, until the input ends (a
    PdfRenderer writes one line; nothing written: the parent gave up)."""
    import weasyprint  # noqa: F401  (the point: imported while the parent computes)

    while line := sys.stdin.readline():
        html_path, pdf_path = line.rstrip("\n").split("\t")
        data = layout(Path(html_path).read_text(encoding="utf-8"))
        Path(pdf_path).write_bytes(data)
        sys.stdout.buffer.write(DONE)
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    _child()
