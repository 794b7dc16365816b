#!/usr/bin/env bash
# Creates bench/.venv-peers: the peers sylphrun is compared with (DBOS, huey, Prefect),
# plus sylphrun itself (editable) and the bench's helpers. The peers are never
# dependencies of sylphrun: they live in this venv only (git-ignored).
#
#   bash bench/setup_peers.sh            # create or update
#   PYTHON=python3.11 bash bench/setup_peers.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
venv="$here/.venv-peers"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then
    # The same interpreter the project's venv was made from.
    python="$("$repo/.venv/bin/python" -c 'import sys; print(sys.base_prefix)')/bin/python3"
  else
    python=python3
  fi
fi
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# Versions pinned to ones this harness was run with.
"$venv/bin/python" -m pip install -q \
  "dbos==3.4.0" \
  "huey==3.5.4" \
  "prefect==3.9.1" \
  "psutil==7.2.2" "matplotlib==3.11.2" "pyinstrument==5.1.3" "py-spy==0.4.3"
"$venv/bin/python" -m pip install -q -e "$repo"
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
for name in ("sylphrun", "dbos", "huey", "prefect", "matplotlib"):
    try:
        print(f"{name:12} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name:12} missing")
PY
