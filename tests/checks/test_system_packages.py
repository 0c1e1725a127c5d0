"""One list of the system packages the suite needs: .ci/system-packages.txt.

CI installs exactly that list, the README's `sudo apt-get install` line is that list, and every
package a skipping test names is on it.
"""

from __future__ import annotations

import re
import subprocess

from helpers import REPO

PACKAGES_FILE = REPO / ".ci" / "system-packages.txt"


def system_packages() -> list[str]:
    return [
        word
        for line in PACKAGES_FILE.read_text().splitlines()
        for word in line.split("#", 1)[0].split()
    ]


def test_ci_installs_the_list():
    run = (REPO / ".ci" / "run").read_text()
    reads = [line for line in run.splitlines() if ".ci/system-packages.txt" in line]
    mapfile = [line for line in reads if line.startswith("mapfile -t packages")]
    assert len(mapfile) == 1, reads
    assert 'apt-get install -y -q --no-install-recommends "${packages[@]}"' in run
    # the very line .ci/run runs, run here: it yields the list, in order
    proc = subprocess.run(
        ["bash", "-c", f'set -euo pipefail; {mapfile[0]}; printf "%s\\n" "${{packages[@]}}"'],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == system_packages()
    assert len(set(system_packages())) == len(system_packages())


def test_readme_installs_exactly_the_list():
    lines = [
        line.strip()
        for line in (REPO / "README.md").read_text().splitlines()
        if line.strip().startswith("sudo apt-get install")
    ]
    assert len(lines) == 1, lines
    packages = [word for word in lines[0].split()[3:] if not word.startswith("-")]
    assert packages == system_packages()


def test_every_package_a_test_names_is_on_the_list():
    named: set[str] = set()
    for path in [*REPO.glob("tests/*.py"), *REPO.glob("tests/**/*.py")]:
        text = path.read_text()
        for tool, package in re.findall(
            r'require_tool\(\s*"([\w.+-]+)"(?:,\s*"([\w.+-]+)")?', text
        ):
            named.add(package or tool)
        named.update(re.findall(r"apt-get install -y (?!-)([\w.+-]+)", text))
    assert named, "no test names a system package?"
    assert named <= set(system_packages()), named - set(system_packages())
