# Two commands a newcomer needs: `make demo` and `make test`. Each sets itself up.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOVECOT_PKGS := dovecot-imapd dovecot-sieve dovecot-managesieved
PDF_PKGS := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core fonts-liberation2

CORPUS_PKG := libpython3.11-testsuite
CORPUS := .corpus

.PHONY: demo test faults lint bench setup clean notebooks postfix corpus

setup: $(STAMP) dovecot postfix

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,devkit]'
	@touch $(STAMP)

# Dovecot serves the demo and the integration tests; installed once, never started as a service.
dovecot:
	@if [ ! -x /usr/sbin/dovecot ] || [ ! -x /usr/lib/dovecot/managesieve ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "mailusage needs Debian's $(DOVECOT_PKGS): run 'sudo apt-get install $(DOVECOT_PKGS)' (as root), then retry." >&2; exit 1; \
	  fi; \
	  echo "installing $(DOVECOT_PKGS) (apt)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DOVECOT_PKGS) >/dev/null; \
	fi
	@command -v openssl >/dev/null || { echo "openssl is needed for the test certificate: apt-get install openssl" >&2; exit 1; }
	@# report.pdf: WeasyPrint lays it out with Pango. Decree 30/2020 asks for Times New Roman:
	@# Liberation Serif (fonts-liberation2) is its metric twin with every Vietnamese glyph.
	@if ! ldconfig -p | grep -q libpangoft2-1.0 || ! ldconfig -p | grep -q libharfbuzz-subset || [ ! -d /usr/share/fonts/truetype/dejavu ] || [ ! -f /usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "report.pdf needs Debian's $(PDF_PKGS): run 'sudo apt-get install $(PDF_PKGS)', then retry." >&2; exit 1; \
	  fi; \
	  echo "installing $(PDF_PKGS) (apt)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PDF_PKGS) >/dev/null; \
	fi

# Postfix serves the mail-log tests (issue 25; devkit/postfix.py runs a private one as
# root). Installed with debconf's "No configuration": no /etc/postfix/main.cf, so the package
# sets up no system MTA and its service, if started at all, listens nowhere.
MTA_PKGS := postfix dovecot-lmtpd
postfix:
	@if [ ! -x /usr/sbin/postfix ] || [ ! -x /usr/lib/dovecot/lmtp ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "note: the Postfix tests are skipped without Debian's $(MTA_PKGS) (and root)." >&2; exit 0; \
	  fi; \
	  echo "installing $(MTA_PKGS) (apt, unconfigured)"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(MTA_PKGS) >/dev/null; \
	  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl disable --now postfix >/dev/null 2>&1 || true; fi; \
	fi

# Real damaged mail for tests/faults/test_corpus.py: CPython's email test corpus, taken from
# Debian's $(CORPUS_PKG) (downloaded, never installed) into $(CORPUS)/test_email/data. Where
# apt cannot give it (not Debian, no network), the reason goes in $(CORPUS)/unavailable and
# that test is skipped with it; nothing else depends on the corpus.
corpus:
	@if [ -d /usr/lib/python3.11/test/test_email/data ] || [ -d $(CORPUS)/test_email/data ]; then exit 0; fi; \
	rm -rf $(CORPUS) && mkdir -p $(CORPUS)/deb && cd $(CORPUS)/deb && \
	if ! apt-get download -qq $(CORPUS_PKG) >../apt.log 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq >>../apt.log 2>&1; apt-get download -qq $(CORPUS_PKG) >>../apt.log 2>&1; \
	fi; \
	deb=$$(ls $(CORPUS_PKG)_*.deb 2>/dev/null | head -n 1); \
	if [ -z "$$deb" ]; then \
	  echo "apt-get download $(CORPUS_PKG) failed: $$(tail -n 1 ../apt.log)" > ../unavailable; \
	  echo "warning: $$(cat ../unavailable); tests/faults/test_corpus.py will be skipped" >&2; exit 0; \
	fi; \
	dpkg-deb --fsys-tarfile "$$deb" | tar -x --wildcards '*/test_email/data/*' && \
	mv usr/lib/python3.11/test/test_email .. && cd .. && rm -rf deb apt.log && \
	echo "CPython's email corpus: $$(ls test_email/data | wc -l) files in $(CORPUS)/test_email/data"

demo: setup
	$(BIN)/mailusage demo

# JupyterLab on the analyst notebooks (the `analyst` extra); they find demo-data/ by themselves.
notebooks: setup
	$(BIN)/pip install -q -e '.[dev,analyst]'
	cd notebooks && ../$(BIN)/jupyter lab

test: setup corpus
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@# Its own temp root: pytest prunes old /tmp/pytest-of-* dirs, which would pull the
	@# files out from under another run's Dovecot on the same machine.
	$(BIN)/pytest --basetemp=.pytest-tmp

# The whole fault suite (more cut points, seeds and kills than `make test` runs); it writes
# its table of faults tried, rows compared, lost and duplicated to docs/fault-suite.md.
faults: setup corpus
	MAILUSAGE_FAULTS=full MAILUSAGE_FAULTS_REPORT=docs/fault-suite.md \
	  $(BIN)/pytest --basetemp=.pytest-tmp tests/faults

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

# A province's nights and months (10,000 mailboxes; ~40 minutes on 2 cores), its month's
# scope bundles (~3 minutes), then one mailbox's FETCH and EWS throughput. Results go in
# benchmarks/README.md by hand.
bench: setup
	$(BIN)/python benchmarks/nightly_scale.py
	$(BIN)/python benchmarks/province_scale.py
	$(BIN)/python benchmarks/collect_throughput.py
	$(BIN)/python benchmarks/ews_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .pytest-tmp .mypy_cache .ruff_cache $(CORPUS)
