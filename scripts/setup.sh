#!/usr/bin/env bash
# Sets up everything talkies needs on a fresh Debian/Ubuntu machine, idempotently:
# system tools (redis-server, ffmpeg/ffprobe), a virtualenv in .venv and the Python packages.
# Re-running is cheap: Python packages are reinstalled only when pyproject.toml or
# requirements-nodeps.txt change.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]} with apt-get"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: talkies needs Python >= 3.11 (found $("$python" --version 2>&1)); set PYTHON=..." >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv

# torch: these machines carry the CPU build of 2.13.0 locally; GPU hosts set TORCH_SPEC
# (e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128").
torch_spec=${TORCH_SPEC:-torch==2.13.0}
want=$(cat pyproject.toml constraints.txt requirements-nodeps.txt | sha256sum | cut -c1-16)-$(echo "$torch_spec" | sha256sum | cut -c1-8)
stamp=.venv/.talkies-installed
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing Python packages into .venv (first run takes a few minutes)"
    .venv/bin/python -m pip install -q --upgrade pip
    # shellcheck disable=SC2086
    .venv/bin/python -m pip install -q $torch_spec
    # constraints.txt pins everything else, so a fresh machine next month gets what was tested
    # (upgrade on purpose: bash scripts/lock.sh).
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
    # audiocraft and friends: --no-deps, see requirements-nodeps.txt and README.
    .venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
    echo "$want" > "$stamp"
fi
