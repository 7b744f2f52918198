"""The deploy files (Dockerfile, .dockerignore, docker-compose.yml), checked without a Docker engine.

Compose checks run on the file as Compose v2 resolves it (`config --format json`: schema, anchors,
interpolation) when a Compose CLI is installed, and on the plain YAML when PyYAML is; with neither,
they are skipped with that reason. The Dockerfile and .dockerignore checks need nothing.
"""

import fnmatch
import importlib
import json
import os
import re
import shutil
import subprocess
import tomllib
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from tests.paths import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PUBLIC = "gateway"
ONE_SHOTS = {"scraper"}
STATEFUL = {"indexer", "redis", "milvus"}
BACKENDS = ("detector", "embedder", "indexer")
SCALABLE = {"detector", "embedder", "gateway", "worker"}
PROBE = "services.common.healthcheck"
# Services whose settings prefix is another package's: the ingest worker runs services.scraper.
SETTINGS_OF = {"worker": "scraper"}

Service = dict[str, Any]


# --- docker-compose.yml, loaded two ways -------------------------------------------------------


def compose_cli() -> list[str] | None:
    """A Compose v2 CLI, as the docker plugin or standalone (v1 cannot print JSON)."""
    for cli in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cli[0]) is None:
            continue
        probe = subprocess.run([*cli, "version", "--short"], capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.strip().lstrip("v").startswith("2."):
            return cli
    return None


def load_with_compose() -> dict[str, Any]:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose v2 CLI (docker compose / docker-compose) to resolve the file")
    # The file's own defaults only: a developer's VS_* variables or .env must not change the verdict.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VS_")}
    command = [*cli, "--env-file", os.devnull, "-f", str(COMPOSE_FILE), "config", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def load_with_yaml() -> dict[str, Any]:
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        pytest.skip("PyYAML is not installed")
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))


@pytest.fixture(scope="module", params=["compose-cli", "pyyaml"])
def services(request: pytest.FixtureRequest) -> dict[str, Service]:
    loaded = load_with_compose() if request.param == "compose-cli" else load_with_yaml()
    return dict(loaded["services"])


def words(value: Any) -> list[str]:
    return value.split() if isinstance(value, str) else [str(v) for v in value or []]


def default_of(value: Any) -> str:
    """``${VAR:-default}`` -> default, as Compose reads it with VAR unset (plain YAML keeps it raw)."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def env_of(service: Service) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: default_of(v) for k, v in env.items()}


def conditions(service: Service) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def mounts(service: Service) -> list[dict[str, Any]]:
    """Volumes in long form; short ``source:target[:ro]`` strings are converted."""
    out = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            kind = "bind" if source.startswith(("/", ".", "~", "$")) else "volume"
            volume = {"type": kind, "source": source, "target": target, "read_only": mode == ["ro"]}
        out.append(volume)
    return out


def probe_words(service: Service) -> list[str]:
    check = service.get("healthcheck") or {}
    return [] if check.get("disable") else words(check.get("test"))


def python_modules(service: Service) -> list[str]:
    argvs = (words(service.get("command")), probe_words(service))
    return [argv[i + 1] for argv in argvs for i, word in enumerate(argv[:-1]) if word == "-m"]


def test_long_running_services_have_a_healthcheck_and_restart(services: dict[str, Service]) -> None:
    problems = []
    for name, service in services.items():
        if name in ONE_SHOTS:
            if str(service.get("restart")) != "no":
                problems.append(f"{name}: a one-shot needs restart: 'no'")
            continue
        probe = probe_words(service)
        if not probe:
            problems.append(f"{name}: no healthcheck")
        elif "build" in service and PROBE not in probe:
            problems.append(f"{name}: healthcheck should run python -m {PROBE}")
        if service.get("restart") != "unless-stopped":
            problems.append(f"{name}: restart should be unless-stopped, not {service.get('restart')!r}")
    assert not problems, "\n".join(problems)


def test_depends_on_waits_for_health(services: dict[str, Service]) -> None:
    problems = []
    for name, service in services.items():
        for dep, condition in conditions(service).items():
            want = "service_completed_successfully" if dep in ONE_SHOTS else "service_healthy"
            if dep not in services or condition != want:
                problems.append(f"{name} -> {dep}: condition {condition!r}, want {want!r}")
    assert not problems, "\n".join(problems)
    assert set(conditions(services[PUBLIC])) == {*BACKENDS, "redis"}


def test_scalable_no_container_names_and_only_the_gateway_publishes(services: dict[str, Service]) -> None:
    assert [n for n, s in services.items() if "container_name" in s] == []
    assert [n for n, s in services.items() if s.get("ports")] == [PUBLIC]
    (port,) = services[PUBLIC]["ports"]
    published = port if isinstance(port, str) else f"{port.get('published')}:{port['target']}"
    assert default_of(published) == "8080:8080"


def test_python_m_targets_exist(services: dict[str, Service]) -> None:
    used = {(module, name) for name, service in services.items() for module in python_modules(service)}
    missing = []
    for module, name in sorted(used):
        path = ROOT.joinpath(*module.split("."))
        if not ((path / "__main__.py").is_file() or path.with_suffix(".py").is_file()):
            missing.append(f"python -m {module} (service {name})")
    assert not missing, "no such runnable module:\n" + "\n".join(missing)
    built = {name for name, service in services.items() if "build" in service}
    assert built == {name for _, name in used}, "every project service runs python -m services.<name>"


def test_servers_listen_on_all_interfaces_and_probe_their_own_port(services: dict[str, Service]) -> None:
    for name, service in services.items():
        probe, env = probe_words(service), env_of(service)
        if "build" not in service or not probe:
            continue
        prefix = f"VS_{SETTINGS_OF.get(name, name).upper()}_"
        kind, target = probe[probe.index(PROBE) + 1 : probe.index(PROBE) + 3]
        port = target.rsplit(":", 1)[1] if kind == "grpc" else target.split(":")[2].split("/")[0]
        # A worker serves nothing but /metrics: that listener is what it binds and what is probed.
        listener = prefix + ("METRICS_" if target.endswith("/metrics") else "")
        assert env.get(listener + "HOST") == "0.0.0.0", f"{name} must bind 0.0.0.0 in a container"
        assert port == env.get(listener + "PORT"), f"{name} probes port {port}"
        if kind == "grpc":
            assert probe[-1] == f"visualsearch.v1.{name.capitalize()}"


def settings_env_names(service: str) -> set[str] | None:
    """``VS_<SERVICE>_<FIELD>`` for each field of the service's settings class, None if it has none."""
    prefix = f"VS_{service.upper()}_"
    try:
        module = importlib.import_module(f"services.{service}.config")
    except ModuleNotFoundError:
        return None
    classes = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, BaseSettings)]
    for settings in classes:
        if settings.model_config.get("env_prefix") == prefix:
            return {prefix + field.upper() for field in settings.model_fields}
    return None


def test_every_service_variable_names_a_real_setting(services: dict[str, Service]) -> None:
    """Settings ignore unknown variables, so a misspelt one would silently leave the default."""
    problems = []
    for name, service in services.items():
        package = SETTINGS_OF.get(name, name)
        own = [var for var in env_of(service) if var.startswith(f"VS_{package.upper()}_")]
        known = settings_env_names(package) if own else set()
        if known is None:
            problems.append(
                f"{name}: services/{package}/config.py has no settings with prefix VS_{package.upper()}_"
            )
        else:
            problems += [
                f"{name}: {var} is no setting of services.{package}" for var in own if var not in known
            ]
    assert not problems, "\n".join(problems)


def test_gateway_reaches_every_replica_through_dns(services: dict[str, Service]) -> None:
    env = env_of(services[PUBLIC])
    for backend in BACKENDS:
        port = env_of(services[backend])[f"VS_{backend.upper()}_PORT"]
        assert env[f"VS_GATEWAY_{backend.upper()}_ADDR"] == f"dns:///{backend}:{port}"


def test_stateless_services_have_a_replicas_knob_and_stateful_ones_run_once(
    services: dict[str, Service],
) -> None:
    replicas = {n: default_of(str(s.get("deploy", {}).get("replicas", 1))) for n, s in services.items()}
    assert {n for n, s in services.items() if "replicas" in s.get("deploy", {})} == SCALABLE
    assert all(replicas[n] == "1" for n in services), replicas  # the default stack is one of each
    worker = env_of(services["worker"])
    for backend in ("embedder", "indexer"):
        port = env_of(services[backend])[f"VS_{backend.upper()}_PORT"]
        assert worker[f"VS_SCRAPER_{backend.upper()}_ADDR"] == f"dns:///{backend}:{port}"


def test_only_stateful_services_have_volumes_and_shared_data_is_read_only(
    services: dict[str, Service],
) -> None:
    with_volume = {n for n, s in services.items() if any(m["type"] == "volume" for m in mounts(s))}
    assert with_volume == STATEFUL
    shared = [
        (n, m) for n, s in services.items() for m in mounts(s) if m["target"] in ("/models", "/datasets")
    ]
    assert {n for n, _ in shared} >= {"detector", "embedder", PUBLIC}
    assert all(m.get("read_only") for _, m in shared), shared


def test_images_are_pinned_and_run_as_the_dockerfile_user(services: dict[str, Service]) -> None:
    for name, service in services.items():
        image = default_of(service.get("image", ""))
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: image {image!r} has no tag"
        assert not image.endswith(":latest"), f"{name}: image {image!r} is not pinned"
        if "build" in service:
            assert str(service.get("user")) == final_user(), name


# --- Dockerfile and .dockerignore ---------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in logical.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(p[0].upper(), p[1] if len(p) > 1 else "") for p in pairs]


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for op, args in instructions():
        if op == "FROM":
            out.append([])
        if out:
            out[-1].append((op, args))
    return out


def final_user() -> str:
    users = [args for op, args in stages()[-1] if op == "USER"]
    return users[-1] if users else "root"


def dockerignored(path: str) -> bool:
    """Docker's rule, approximated: last matching pattern wins, a match on a parent folder counts.

    fnmatch's ``*`` also crosses ``/``, so this errs towards "ignored": never a false pass.
    """
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in (line for line in lines if line and not line.startswith("#")):
        bare = pattern.removeprefix("!").strip("/")
        alternatives = {bare, bare.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(c, a) for c in candidates for a in alternatives):
            ignored = not pattern.startswith("!")
    return ignored


def test_dockerfile_is_multi_stage_and_runs_as_non_root() -> None:
    assert len(stages()) >= 2
    assert final_user().split(":")[0] not in ("root", "0")


def test_dockerfile_base_images_are_pinned_and_nothing_is_fetched_by_add() -> None:
    ops = instructions()
    first_from = next(i for i, (op, _) in enumerate(ops) if op == "FROM")
    args = dict(a.split("=", 1) for op, a in ops[:first_from] if op == "ARG" and "=" in a)
    names: set[str] = set()
    for op, rest in ops:
        assert not (op == "ADD" and re.search(r"https?://|git@", rest)), f"remote ADD: {rest}"
        if op != "FROM":
            continue
        image, *alias = re.sub(r"--platform=\S+\s+", "", rest).split()
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        names.update(alias[-1:])
        assert image in names or re.fullmatch(r"[\w./-]+:[\w.-]+(@sha256:\w+)?", image), image
        assert ":latest" not in image, image
    python = re.search(r"python:(\d+)\.(\d+)", args.get("PYTHON_IMAGE", ""))
    need = re.search(
        r"(\d+)\.(\d+)", tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    )
    assert python, "PYTHON_IMAGE should name a python:X.Y image"
    assert need, "pyproject.toml should state requires-python"
    assert (int(python[1]), int(python[2])) >= (int(need[1]), int(need[2]))


def test_dockerfile_copies_only_what_the_context_holds() -> None:
    for op, rest in instructions():
        if op != "COPY" or "--from=" in rest:
            continue
        argv = json.loads(rest) if rest.startswith("[") else rest.split()
        for source in [a for a in argv if not a.startswith("--")][:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_local_state_out() -> None:
    for path in (".venv", ".git", "data", "tests", ".pytest_cache", ".mypy_cache", "services/x/__pycache__"):
        assert dockerignored(path), path
    assert not dockerignored("services/common/healthcheck.py")


def glob_match(relative: str, pattern: str) -> bool:
    """setuptools' package-data glob: ``*`` stays within one folder."""
    parts, globs = relative.split("/"), pattern.split("/")
    return len(parts) == len(globs) and all(
        fnmatch.fnmatchcase(p, g) for p, g in zip(parts, globs, strict=True)
    )


def test_pip_install_carries_every_service_file() -> None:
    """The image runs the installed package, not a checkout: a folder without __init__.py, or a data
    file no package-data pattern names, works from the repo and is silently missing in the container."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    left_out = []
    for path in sorted((ROOT / "services").rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        package = next(p for p in path.parents if (p / "__init__.py").is_file() or p == ROOT)
        relative = path.relative_to(package).as_posix()
        if package == ROOT or (path.suffix == ".py" and package != path.parent):
            left_out.append(f"{path.relative_to(ROOT)} (its folder has no __init__.py)")
        elif path.suffix != ".py" and not any(glob_match(relative, p) for p in patterns):
            left_out.append(f"{path.relative_to(ROOT)} (add it to [tool.setuptools.package-data])")
    assert not left_out, "not in the installed package, so not in the image:\n" + "\n".join(left_out)


def test_production_defaults_keys_on_and_the_index_on_faiss_or_the_milvus_profile(
    services: dict[str, Service],
) -> None:
    assert default_of(env_of(services[PUBLIC])["VS_GATEWAY_AUTH_ENABLED"]) == "true"
    assert "services.cli" in python_modules(services["scraper"])  # the demo loader's own key (keys run)
    indexer = env_of(services["indexer"])
    assert default_of(indexer["VS_INDEXER_BACKEND"]) == "faiss"
    assert default_of(indexer["VS_MILVUS_URI"]) == "http://milvus:19530"
    assert services["milvus"]["profiles"] == ["milvus"]
    assert conditions(services["indexer"]) == {"milvus": "service_healthy"}
