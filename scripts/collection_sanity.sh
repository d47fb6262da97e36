#!/usr/bin/env bash
# `make sanity`: ansible-test sanity on the collection coralpi.coral as ansible-galaxy installs
# it, with the ansible-core of .venv (ansible-test makes a venv per test and installs that
# test's pinned requirements from PyPI). For maintainers; CI does not run it (it takes about
# ten minutes). Extra arguments go to ansible-test, e.g. `--test pylint`.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/.venv/bin
work=$(mktemp -d -t coralpi-sanity-XXXXXX)
trap 'rm -rf "$work"' EXIT

tarball=$("$bin/python" -m provision.collection build --output "$work/dist")
"$bin/ansible-galaxy" collection install -p "$work/root" "$tarball" >/dev/null

# ansible-test bootstraps pip in each of its venvs with a get-pip script it downloads from
# ci-files.testing.ansible.com unless its cache holds one. The cache gets one made here: the
# same pip release from PyPI (which a machine that runs coralpi's tests reaches), run as that
# script runs its embedded copy.
pip_version=$("$bin/python" - <<'PY'
import pathlib, re, ansible_test
text = (pathlib.Path(ansible_test.__file__).parent / "_internal/python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", text).group(1))
PY
)
script=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [[ ! -f $script ]]; then
    mkdir -p "$(dirname "$script")" "$HOME/.ansible/test/cache/pip-$pip_version"
    "$bin/pip" download --quiet --no-deps -d "$HOME/.ansible/test/cache/pip-$pip_version" "pip==$pip_version"
    wheel=$(ls "$HOME/.ansible/test/cache/pip-$pip_version"/pip-"$pip_version"-*.whl)
    cat > "$script" <<PY
"""In place of get-pip.py $pip_version: pip $pip_version from PyPI's wheel installs itself."""
import runpy
import sys

sys.path.insert(0, "$wheel")
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.argv = [sys.argv[0], "install", "--upgrade", "--force-reinstall", *args]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
PY
    echo "sanity: ansible-test's pip $pip_version bootstrap is PyPI's wheel ($script)"
fi

cd "$work/root/ansible_collections/coralpi/coral"
PATH=$bin:$PATH "$bin/ansible-test" sanity --requirements --local --python "$("$bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" --color no "$@"
