#!/usr/bin/env bash
# Re-resolves the Python dependencies and writes constraints.txt, the pins that
# scripts/setup.sh, CI and the Dockerfile install with (`pip install -c constraints.txt`).
# Run it to upgrade on purpose (review the diff, run the tests, commit both):
#   bash scripts/lock.sh
# It resolves pyproject.toml's ranges in a throw-away virtualenv from the package index.
# torch is pinned separately (TORCH_SPEC in setup.sh, TORCH_VERSION in the Dockerfile) and
# audiocraft/torchaudio/xformers in requirements-nodeps.txt, so they are left out here.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
"$tmp/venv/bin/python" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
"$tmp/venv/bin/python" -m pip install -q ".[test]"
{
    echo "# Pins for every Python dependency except torch (TORCH_SPEC / TORCH_VERSION) and the"
    echo "# --no-deps packages (requirements-nodeps.txt). Used by scripts/setup.sh, CI and the Dockerfile."
    echo "# Upgrade on purpose with: bash scripts/lock.sh (then run the tests and commit both)."
    "$tmp/venv/bin/python" -m pip freeze --exclude-editable \
        | grep -v -i -E '^(talkies|torch|torchaudio|xformers|audiocraft)==' \
        | grep -v -E '^(nvidia-|triton==)' \
        | grep -v '^-e' | sed -E 's/\+[a-z0-9.]+$//'
} > constraints.txt
echo "wrote constraints.txt ($(grep -c '==' constraints.txt) pins)"
