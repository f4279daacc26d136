# shellcheck shell=bash
# Sourced by tools/run and tools/test: make sure .venv exists and holds this project
# with its dev tools, so both commands work on a fresh machine with only python3.
_venv_say() { printf '[venv %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
if [[ ! -x .venv/bin/python ]]; then
  _venv_say "creating .venv"
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
if [[ ! -f .venv/.installed || pyproject.toml -nt .venv/.installed ]] \
   || ! python -c 'import nodecluster, pytest, mypy, ruff, aiobotocore, moto' 2>/dev/null; then
  _venv_say "installing the project and its dev tools into .venv"
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e ".[dev]"
  touch .venv/.installed
fi
