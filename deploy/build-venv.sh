#!/bin/sh
# The image's build step (Dockerfile), which tests/packaging also runs in a fresh venv:
#   deploy/build-venv.sh VENV [SOURCE]
# the exact lock first (durable_rules compiles from its sdist: needs gcc), then the package on
# top of it without resolving again, then `pip check`: the ranges pyproject declares must
# accept every version the lock pins.
set -eu
venv=$1
src=${2:-.}
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$src/requirements.txt"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "$src"
"$venv/bin/pip" check --disable-pip-version-check
"$venv/bin/postsale" --help > /dev/null
