#!/usr/bin/env bash
# Install the peer servers of the application benchmarks into their own venv,
# bench/.peers-venv (gitignored), so the project's Python env stays clean.
# bench/run.py looks for the peers' executables there first, then on PATH.
#
#   bash bench/install-peers.sh          # PYTHON=python3.12 to pick another
#
# Each package is installed on its own: one that fails is reported and the
# others still go in; run.py skips a peer that is missing.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.peers-venv"
python="${PYTHON:-python3}"

# bjoern builds against libev; socketify's bundled library loads libuv.so.1; h2o is the
# static-file peer of vw and nginx.
missing=()
for deb in libev-dev libuv1 h2o; do
    dpkg -s "$deb" >/dev/null 2>&1 || missing+=("$deb")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then apt_get=(apt-get); else apt_get=(sudo apt-get); fi
    "${apt_get[@]}" update -qq \
        && DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq "${missing[@]}" \
        || echo "install-peers: could not install ${missing[*]} (bjoern needs" \
                "libev-dev to build, socketify needs libuv1 to load)" >&2
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv" || exit 1
"$venv/bin/python" -m pip install -q --upgrade pip

failed=()
for pkg in granian 'uvicorn[standard]' bjoern socketify gunicorn; do
    echo "install-peers: $pkg" >&2
    "$venv/bin/python" -m pip install -q "$pkg" || failed+=("$pkg")
done

"$venv/bin/python" -m pip list 2>/dev/null \
    | grep -iE '^(granian|uvicorn|httptools|uvloop|bjoern|socketify) '
if [ ${#failed[@]} -gt 0 ]; then
    echo "install-peers: failed: ${failed[*]} (run.py skips them)" >&2
    exit 1
fi
