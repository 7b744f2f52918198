# Shared by scripts/up, scripts/test: everything a fresh clone needs, installed from the project's own files.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

# Creates .venv and installs the project (with dev tools) pinned by requirements/constraints.txt.
# Re-installs only when pyproject.toml or the constraints change.
ensure_venv() {
  local stamp="$VENV/.visualsearch-installed" want
  want=$(cat "$ROOT/pyproject.toml" "$ROOT/requirements/constraints.txt" | sha256sum | cut -c1-64)
  if [[ -x "$PY" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo "setting up $VENV (first run takes a minute)..." >&2
  [[ -x "$PY" ]] || "${PYTHON:-python3}" -m venv "$VENV"
  "$PY" -m pip install --quiet --upgrade pip >&2
  "$PY" -m pip install --quiet -c "$ROOT/requirements/constraints.txt" -e "$ROOT[dev]" >&2
  echo "$want" > "$stamp"
}

# The stack's queues need a real redis-server; install Debian's when it is missing and we may.
ensure_redis_server() {
  command -v redis-server >/dev/null 2>&1 && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server with apt-get..." >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
    # Debian's package starts a system service on 6379 where systemd runs; we start our own.
  else
    echo "redis-server is missing: install it (e.g. sudo apt-get install redis-server)" >&2
    return 1
  fi
}

# The browser tests drive Debian's Chromium (Playwright, no downloaded browser); install it when missing and we may.
ensure_chromium() {
  [[ -x /usr/bin/chromium ]] && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium with apt-get..." >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
  else
    echo "chromium is missing: the browser tests will fail (e.g. sudo apt-get install chromium)" >&2
  fi
}
