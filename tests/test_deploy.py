"""The deployment files agree with each other and with the code: the Dockerfile, the compose
file, Prometheus' scrape config and the image workflow. (Building the image needs Docker and
a registry; these checks need neither.)"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers.__main__ import build_parser
from helpers.export import MODEL_SUFFIXES, ModelMeta, Predictor
from tests.conftest import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
COMPOSE = REPO_ROOT / "deploy" / "compose.yaml"
PROMETHEUS = REPO_ROOT / "deploy" / "prometheus.yml"
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "docker.yml"


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's ``(INSTRUCTION, arguments)``, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _arg_defaults() -> dict[str, str]:
    """``ARG name=default`` values."""
    pairs = (args.split("=", 1) for op, args in _instructions() if op == "ARG" and "=" in args)
    return {name.strip(): value.strip() for name, value in pairs}


def _expand(value: str) -> str:
    """``${NAME}`` replaced by the ARG's default."""
    defaults = _arg_defaults()
    return re.sub(r"\$\{(\w+)\}", lambda match: defaults[match[1]], value)


def _final_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage (the image that runs)."""
    instructions = _instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def _exec_form(op: str) -> list[str]:
    """The JSON (exec) form of the final stage's ``op``."""
    (args,) = [args for name, args in _final_stage() if name == op]
    if op == "HEALTHCHECK":
        args = args[args.index("CMD") + len("CMD") :].strip()
    return json.loads(args)


def _serve_command() -> tuple[list[str], object]:
    """The image's CMD and how ``python -m helpers`` parses it."""
    command = _exec_form("CMD")
    assert command[:3] == ["python", "-m", "helpers"], command
    return command, build_parser().parse_args(command[3:])


def _exposed_port() -> int:
    (port,) = [int(args.split("/")[0]) for op, args in _final_stage() if op == "EXPOSE"]
    return port


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# The Dockerfile
# ---------------------------------------------------------------------------------------------


def test_the_image_is_a_slim_python_that_ci_tests() -> None:
    bases = [_expand(args.split()[0]) for op, args in _instructions() if op == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases), bases
    assert "download.pytorch.org/whl/cpu" in _arg_defaults()["TORCH_INDEX_URL"]


def test_the_image_runs_as_an_unprivileged_user() -> None:
    users = [args.strip() for op, args in _final_stage() if op == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0"), users
    created = " ".join(args for op, args in _final_stage() if op == "RUN")
    assert re.search(rf"useradd\b.*\b{re.escape(users[-1])}\b", created)
    ops = [op for op, _ in _final_stage()]
    assert ops.index("USER") < ops.index("CMD")


def test_the_command_is_a_serve_command_of_our_cli() -> None:
    command, args = _serve_command()
    assert args.command == "serve" and args.host == "0.0.0.0"
    assert args.port == _exposed_port()
    model = Path(args.model)
    assert model.parent.as_posix() == "/models" and MODEL_SUFFIXES[model.suffix] == "onnx"
    assert shlex.join(command).startswith("python -m helpers serve")


def test_the_healthcheck_asks_health_with_the_standard_library() -> None:
    command = _exec_form("HEALTHCHECK")
    assert command[:2] == ["python", "-c"]
    code = command[2]
    assert "urllib.request" in code and f"127.0.0.1:{_exposed_port()}/health" in code
    compile(code, "<healthcheck>", "exec")  # valid Python
    (options,) = [args for op, args in _final_stage() if op == "HEALTHCHECK"]
    assert "--start-period" in options and "--timeout" in options


def test_torch_comes_from_the_cpu_index_at_the_pinned_versions() -> None:
    pins = (REPO_ROOT / "requirements" / "constraints.txt").read_text(encoding="utf-8")
    for name in ("torch", "torchvision"):  # what the Dockerfile's grep takes
        assert re.search(rf"^{name}==\S+$", pins, flags=re.MULTILINE), name
    runs = " ".join(args for op, args in _instructions() if op == "RUN")
    assert '--index-url "${TORCH_INDEX_URL}"' in runs and '".[serve]"' in runs
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r"^serve = \[", pyproject, flags=re.MULTILINE)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether ``.dockerignore`` keeps ``path`` out (last matching pattern wins; a pattern
    that matches a parent folder matches its content)."""
    ignored = False
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        globs = [glob, glob.removeprefix("**/")]
        if any(fnmatch.fnmatchcase(p, g) for p in prefixes for g in globs):
            ignored = not negate
    return ignored


def test_dockerignore_lets_through_what_the_image_copies_and_nothing_heavy() -> None:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    copied = []
    for op, args in _instructions():
        if op == "COPY" and "--from" not in args:
            copied += [_expand(source) for source in args.split()[:-1]]
    assert {"helpers", "pyproject.toml", "deploy/models/"} <= set(copied)
    for source in copied:
        folder = (REPO_ROOT / source).is_dir()
        inside = f"{source.rstrip('/')}/model.onnx" if folder else source
        assert not _ignored(inside, patterns), source
    for heavy in (".venv/lib/x", "data/checkpoints/a.pt", ".git/HEAD", "notebooks/a.ipynb"):
        assert _ignored(heavy, patterns), heavy
    assert _ignored("helpers/__pycache__/a.pyc", patterns)
    assert (REPO_ROOT / "deploy" / "models").is_dir()  # the default MODEL_DIR exists


# ---------------------------------------------------------------------------------------------
# Compose and Prometheus
# ---------------------------------------------------------------------------------------------


def _app_service() -> tuple[str, dict]:
    services = _compose()["services"]
    (name,) = [name for name, service in services.items() if "build" in service]
    return name, services[name]


def test_compose_builds_this_image_and_publishes_its_port() -> None:
    _, service = _app_service()
    context = (COMPOSE.parent / service["build"]["context"]).resolve()
    assert (context / service["build"].get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    host, container = (int(p) for p in str(service["ports"][0]).split(":")[-2:])
    assert container == _exposed_port() and host == container
    mounts = [volume.split(":") for volume in service["volumes"]]
    _, args = _serve_command()
    assert any(target == str(Path(args.model).parent) for _, target, *_ in mounts)


def test_prometheus_scrapes_the_apps_metrics_route() -> None:
    name, _ = _app_service()
    prometheus = _compose()["services"]["prometheus"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prometheus["image"])
    source, target = prometheus["volumes"][0].split(":")[:2]
    assert (COMPOSE.parent / source).resolve() == PROMETHEUS
    assert target == "/etc/prometheus/prometheus.yml"
    assert prometheus["depends_on"][name]["condition"] == "service_healthy"
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    (targets,) = [group["targets"] for group in job["static_configs"]]
    assert targets == [f"{name}:{_exposed_port()}"]
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_the_app_has_the_routes_the_deployment_calls() -> None:
    pytest.importorskip("fastapi")
    from helpers.serve import create_app

    meta = ModelMeta("simple_cnn", tuple("abcdefghij"), 32, (0.5,) * 3, (0.25,) * 3, "v1")
    predictor = Predictor(
        lambda images: np.zeros((len(images), 10), np.float32), meta, backend="onnx"
    )
    paths = {route.path for route in create_app(predictor).routes}
    assert {"/health", "/metrics", "/predict", "/"} <= paths


# ---------------------------------------------------------------------------------------------
# The workflow that publishes the image
# ---------------------------------------------------------------------------------------------


def test_the_image_workflow_runs_on_version_tags_and_pushes_to_ghcr() -> None:
    workflow = _workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    tags = triggers["push"]["tags"]
    assert any(fnmatch.fnmatchcase("v1.2.3", tag) for tag in tags)
    assert "branches" not in triggers["push"]
    assert workflow["permissions"]["packages"] == "write"
    (job,) = workflow["jobs"].values()
    steps = {step["uses"].split("@")[0]: step for step in job["steps"] if "uses" in step}
    for action in ("docker/login-action", "docker/metadata-action", "docker/build-push-action"):
        assert action in steps, action
    assert steps["docker/login-action"]["with"]["registry"] == "ghcr.io"
    assert steps["docker/metadata-action"]["with"]["images"].startswith("ghcr.io/")
    pushes = [step for step in job["steps"] if step.get("uses", "").startswith("docker/build-push")]
    assert any(step["with"].get("push") is True for step in pushes)
    assert all(step["with"]["context"] == "." for step in pushes)
