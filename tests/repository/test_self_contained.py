"""The repository stands on its own: a clone with nothing beside it runs, and no tracked
file reaches outside it.

The simulator is the part that used to need data from outside the repository (the
upstream schemas); these tests clone the repository into an empty folder and start the
clone's own simulator there, with no override pointing elsewhere.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from starter.local_stack import REPO_ROOT

# Code that climbs above the repository's root, or a folder that only a checkout's
# surroundings would have. (Kustomize overlays in the docs name `../vmsnap/deploy`: a
# user's own repository beside this one, which is how overlays are written.)
OUTSIDE = re.compile(r"\.\./shared\b|\bshared/(reference|DESIGN)|parents\[[3-9]\]|"
                     r"parent\.parent\.parent|[\"']shared[\"']\s*/|VMSNAP_REFERENCE_DIR\s*=")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".cfg", ".sh", ".txt", ""}
NOT_CHECKED = ("simulator/upstream/",)  # upstream data, copied unchanged


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True).stdout.split()
    return [REPO_ROOT / name for name in listed
            if not name.startswith(NOT_CHECKED) and Path(name).suffix in TEXT_SUFFIXES]


def test_no_tracked_file_reaches_outside_the_repository() -> None:
    offenders = []
    for path in tracked_files():
        if path.name == "test_self_contained.py" or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert offenders == [], "\n".join(offenders)


def test_a_clone_with_nothing_beside_it_runs_its_own_simulator(tmp_path: Path) -> None:
    clone = tmp_path / "empty" / "vmsnap"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True,
                   timeout=120)
    assert sorted(p.name for p in clone.parent.iterdir()) == ["vmsnap"]
    env = {k: v for k, v in os.environ.items() if k != "VMSNAP_REFERENCE_DIR"}
    env.update(PYTHONPATH=str(clone), HOME=str(tmp_path))
    where = subprocess.run([sys.executable, "-c", "import simulator; print(simulator.__file__)"],
                           cwd=clone, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(clone)), where.stdout
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", "0", "--kubeconfig", str(kubeconfig)],
        cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "listening" in first, first + process.stdout.read()
        deadline = time.monotonic() + 30
        while not kubeconfig.exists():
            assert time.monotonic() < deadline, "no kubeconfig"
            time.sleep(0.05)
        kubectl = ["kubectl", "--kubeconfig", str(kubeconfig),
                   "--cache-dir", str(tmp_path / "kube-cache")]
        example = clone / "simulator" / "upstream" / "examples" / "vm-cirros.yaml"
        created = subprocess.run([*kubectl, "create", "-n", "default", "-f", str(example)],
                                 capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stderr
        refused = subprocess.run(
            [*kubectl, "create", "-n", "default", "-f", "-"], capture_output=True, text=True,
            timeout=60, input="apiVersion: kubevirt.io/v1\nkind: VirtualMachine\n"
            "metadata: {name: bad}\nspec: {running: maybe}\n")
        assert refused.returncode != 0 and "spec.running" in refused.stderr, refused.stderr
    finally:
        process.terminate()
        process.wait(timeout=30)
