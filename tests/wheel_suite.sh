#!/usr/bin/env bash
# `make test`: the suite against the agent as pip installs it, never against this checkout.
#
#   tests/wheel_suite.sh [PYTEST ARGUMENTS...]
#
# 1. copies the working tree to .suite/tree and builds the wheel from it, once;
# 2. installs that wheel (not editable) with the test tools into a new .suite/venv;
# 3. removes the packages (agent collectors checks exporters) from the copy and runs pytest
#    there: neither the tests nor the agents they start (python -m agent.cli, from that
#    directory) can reach a package but the installed one;
# 4. a guard in .suite/venv (tests/installed_only.py) fails any import of a package from
#    elsewhere, in pytest and in every Python the tests start.
# The tests find the checkout (for deploy/install.sh and `git ls-files`) in VIGIL_SUITE_SOURCE
# and the wheel in VIGIL_SUITE_WHEEL; they read the packages' files where they are installed.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOUT=$PWD
SUITE=$CHECKOUT/.suite
PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

started=$SECONDS
rm -rf "$SUITE"
mkdir -p "$SUITE/tree"
# the working tree, files not yet committed included, without what is built or cached from it
tar --exclude=./.git --exclude=./.venv --exclude=./.lab --exclude=./.suite --exclude=./.state \
  --exclude=./.artifacts --exclude=./build --exclude=./dist --exclude='*.egg-info' --exclude=__pycache__ \
  --exclude=.pytest_cache --exclude=.ruff_cache --exclude=.hypothesis -cf - . | tar -C "$SUITE/tree" -xf -
"$PYTHON" -m venv "$SUITE/venv"
"$SUITE/venv/bin/pip" wheel --quiet --no-deps --wheel-dir "$SUITE/wheel" "$SUITE/tree"
wheels=("$SUITE"/wheel/vigil-*.whl)
"$SUITE/venv/bin/pip" install --quiet --constraint constraints.txt "${wheels[0]}[test]"
site=$("$SUITE/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
cp tests/installed_only.py "$site/vigil_installed_only.py"
echo "import vigil_installed_only" >"$site/vigil_installed_only.pth"
(cd "$SUITE/tree" && rm -rf agent collectors checks exporters build ./*.egg-info)
ln -s "$CHECKOUT/.lab" "$SUITE/tree/.lab"
mkdir -p .artifacts  # the status page's screenshots land in the checkout
ln -s "$CHECKOUT/.artifacts" "$SUITE/tree/.artifacts"
echo "suite: built and installed ${wheels[0]#"$CHECKOUT/"} in $((SECONDS - started)) s; testing it from .suite/tree"

cd "$SUITE/tree"
unset PYTHONPATH
VIGIL_SUITE_SOURCE=$CHECKOUT VIGIL_SUITE_WHEEL=${wheels[0]} exec "$SUITE/venv/bin/pytest" "$@"
