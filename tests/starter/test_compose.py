"""docker-compose.yml and the Dockerfile, checked without a container engine.

The compose file must satisfy the compose specification's own JSON schema
(vendored in deploy/compose/), pin every image, wire its start order through
healthchecks, and have every published port and volume explained in
docs/production.md; the Dockerfile must pin its base and run as non-root.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest
import yaml

from starter.local_stack import REPO_ROOT, SEARCH_ATTRIBUTES

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
SCHEMA_FILE = REPO_ROOT / "deploy" / "compose" / "compose-spec.schema.json"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
PRODUCTION_DOC = REPO_ROOT / "docs" / "production.md"
REGISTER_SCRIPT = REPO_ROOT / "deploy" / "compose" / "register-namespace.sh"

# A tag that names a version: starts with a digit and has at least major.minor.
VERSION_TAG = re.compile(r"^\d+\.\d+(\.\d+)*([.-][A-Za-z0-9.-]+)?$")
FLOATING_TAGS = {"latest", "stable", "main", "master", "edge", "nightly"}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}")


def load_compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


def services() -> dict[str, dict[str, Any]]:
    found = load_compose()["services"]
    assert isinstance(found, dict)
    return found


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def compose_section() -> str:
    """The docker-compose part of docs/production.md, up to the next level-2 heading."""
    text = PRODUCTION_DOC.read_text()
    match = re.search(r"^## Docker Compose\b.*?(?=^## |\Z)", text, re.M | re.S)
    assert match, "docs/production.md has no '## Docker Compose' section"
    return match.group(0)


def image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag at all (the colon belonged to a registry port)
        return False
    return tag not in FLOATING_TAGS and bool(VERSION_TAG.match(tag))


def published_host_ports(service: dict[str, Any]) -> list[str]:
    ports = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.append(str(entry.get("published", entry["target"])))
        else:
            parts = str(entry).split(":")
            ports.append(parts[-2] if len(parts) >= 2 else parts[-1])
    return ports


def volume_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume; the short syntax's options are dropped."""
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            mounts.append((str(entry.get("source", "")), str(entry["target"])))
        else:
            source, target = str(entry).split(":")[:2]
            mounts.append((source, target))
    return mounts


# ---- the compose specification ------------------------------------------------------


def test_vendored_schema_is_the_compose_specification() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["title"] == "Compose Specification"
    assert "services" in schema["properties"]
    readme = (SCHEMA_FILE.parent / "README.md").read_text()
    assert "compose-spec/compose-spec" in readme and "Apache" in readme


def test_compose_file_satisfies_the_compose_schema() -> None:
    assert schema_errors(load_compose()) == []


@pytest.mark.parametrize(
    "breakage",
    ["unknown service key", "ports not a list", "bad depends_on condition", "unknown top key"],
)
def test_schema_check_catches_broken_files(breakage: str) -> None:
    broken = copy.deepcopy(load_compose())
    worker = broken["services"]["worker"]
    if breakage == "unknown service key":
        worker["imagee"] = "typo:1.0"
    elif breakage == "ports not a list":
        broken["services"]["temporal"]["ports"] = "7233:7233"
    elif breakage == "bad depends_on condition":
        worker["depends_on"]["temporal-register"]["condition"] = "service_ready"
    else:
        broken["servics"] = {}
    assert schema_errors(broken) != []


# ---- images, order, health ------------------------------------------------------------


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in services().items():
        assert "image" in service or "build" in service, f"{name} has neither image nor build"
        if "image" in service:
            assert image_pinned(service["image"]), f"{name}: image {service['image']} is not pinned"


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("postgres:16.6", True),
        ("temporalio/server:1.30.1", True),
        ("temporalio/ui:latest", False),
        ("temporalio/ui", False),
        ("postgres:16", False),
        ("registry.example:5000/vmsnap", False),
        ("registry.example:5000/vmsnap:0.1.0", True),
        ("python@sha256:" + "a" * 64, True),
    ],
)
def test_pin_rule(image: str, pinned: bool) -> None:
    assert image_pinned(image) is pinned


def test_the_stack_has_the_required_parts() -> None:
    found = services()
    images = {name: str(service.get("image", "")) for name, service in found.items()}
    assert images["postgresql"].startswith("postgres:")
    assert images["temporal"].startswith("temporalio/server:")
    assert images["temporal-ui"].startswith("temporalio/ui:")
    assert images["temporal-schema"].startswith("temporalio/admin-tools:")
    assert images["temporal-register"].startswith("temporalio/admin-tools:")
    assert found["worker"]["build"]["dockerfile"] == "Dockerfile"
    assert found["temporal"]["environment"]["DB"] == "postgres12"


def test_start_order_uses_conditions_that_can_be_met() -> None:
    found = services()
    for name, service in found.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions (mapping form)"
        for dependency, rule in depends.items():
            assert dependency in found, f"{name} depends on unknown service {dependency}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in found[dependency], f"{dependency} has no healthcheck"
            if condition == "service_completed_successfully":
                restart = str(found[dependency].get("restart", "no"))
                assert restart == "no" or restart.startswith("on-failure"), (
                    f"{dependency} must be able to complete"
                )
    assert found["worker"]["depends_on"]["temporal-register"]["condition"] == (
        "service_completed_successfully"
    )
    assert found["temporal"]["depends_on"]["temporal-schema"]["condition"] == (
        "service_completed_successfully"
    )


def test_long_running_services_have_healthchecks() -> None:
    for name in ("postgresql", "temporal", "worker", "codec-server"):
        check = services()[name]["healthcheck"]
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name


def test_worker_gets_its_kubeconfig_from_a_mounted_file() -> None:
    worker = services()["worker"]
    assert worker["environment"]["KUBECONFIG"] == "/etc/vmsnap/kubeconfig"
    (mount,) = [v for v in worker["volumes"] if v["target"] == "/etc/vmsnap/kubeconfig"]
    assert mount["type"] == "bind" and mount["read_only"] is True
    assert mount["bind"]["create_host_path"] is False  # a missing file is an error, not a dir
    assert worker["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_published_ports_bind_to_localhost_only() -> None:
    for name, service in services().items():
        for entry in service.get("ports", []):
            assert str(entry).startswith("127.0.0.1:"), f"{name} publishes {entry} on all addresses"


def test_bind_mounted_project_files_exist() -> None:
    for name, service in services().items():
        for source, _ in volume_mounts(service):
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{name} mounts missing {source}"
    for script in ("setup-postgres.sh", "register-namespace.sh"):
        path = REPO_ROOT / "deploy" / "compose" / script
        assert path.read_text().startswith("#!/bin/sh\n")


def test_registered_search_attributes_match_the_workflows() -> None:
    match = re.search(r'^SEARCH_ATTRIBUTES="([^"]*)"', REGISTER_SCRIPT.read_text(), re.M)
    assert match, "register-namespace.sh lists no SEARCH_ATTRIBUTES"
    assert set(match.group(1).split()) == set(SEARCH_ATTRIBUTES)
    assert set(SEARCH_ATTRIBUTES.values()) == {"Keyword"}
    assert "--type Keyword" in REGISTER_SCRIPT.read_text()


# ---- documentation --------------------------------------------------------------------


def test_every_published_port_is_documented() -> None:
    section = compose_section()
    for name, service in services().items():
        for port in published_host_ports(service):
            assert f"`{port}`" in section, f"port {port} of {name} is not in docs/production.md"


def test_every_volume_is_documented() -> None:
    section = compose_section()
    compose = load_compose()
    for volume in compose.get("volumes", {}):
        assert f"`{volume}`" in section, f"named volume {volume} is not documented"
    for name, service in services().items():
        for source, target in volume_mounts(service):
            assert f"`{target}`" in section, f"{name}'s mount at {target} is not documented"
            shown = _VARIABLE.sub(lambda m: m.group(1), source)
            documented = f"`{source}`" in section or f"`{shown}`" in section
            assert documented or any(
                f"`{variable}`" in section for variable in _VARIABLE.findall(source)
            ), f"{name}'s volume source {source} is not documented"


def test_every_variable_the_compose_file_reads_is_documented() -> None:
    section = compose_section()
    for variable in sorted(set(_VARIABLE.findall(COMPOSE_FILE.read_text()))):
        assert f"`{variable}`" in section, f"${{{variable}}} is not in docs/production.md"


# ---- Dockerfile -----------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_pins_a_slim_python_311_base() -> None:
    bases = [args.split()[0] for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        assert image_pinned(base), f"base image {base} is not pinned"
        assert re.match(r"^python:3\.11\.\d+-slim", base), base


def test_dockerfile_runs_the_worker_as_non_root() -> None:
    instructions = dockerfile_instructions()
    last_stage = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    users = [args for keyword, args in last_stage if keyword == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert not user.isdigit() or int(user) >= 1000
    keywords = [keyword for keyword, _ in last_stage]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k in {"RUN", "COPY"})
    (cmd,) = [json.loads(args) for keyword, args in last_stage if keyword == "CMD"]
    assert cmd == ["python", "worker.py"]
    env = " ".join(args for keyword, args in last_stage if keyword == "ENV")
    assert "KUBECONFIG=/etc/vmsnap/kubeconfig" in env


def test_dockerfile_installs_the_project_with_pip() -> None:
    runs = [args for keyword, args in dockerfile_instructions() if keyword == "RUN"]
    # the project itself, with an extra at most (tests/repository/test_packaging.py checks which)
    assert any(re.search(r"\bpip install '?\.(\[[a-z0-9,-]+\])?'?(\s|$)", run)
               for run in runs), runs


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".state", "tests", "**/*.kubeconfig", "**/*.key"} <= ignored
    # what `pip install .` and `python worker.py` need stays in the build context
    needed = {"pyproject.toml", "README.md", "worker.py", "starter", "workflows", "activities"}
    assert not needed & ignored
