"""The deployment files agree with the code: the Dockerfile, compose.yaml, .env.example, the
pins in constraints.txt and the Procfile. No Docker daemon runs on the development machines, so
the images are not built here; these checks catch the mistakes that a build would not (a
command that doesn't exist, a setting with a typo, a dependency left unpinned)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml
from typer.main import get_command

from bot.cli import app
from config import Settings

REPO = Path(__file__).resolve().parents[1]
CLI_COMMANDS = set(get_command(app).commands)  # type: ignore[attr-defined]
SETTINGS = {f"TALKIES_{name.upper()}" for name in Settings.model_fields}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dockerfile() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            steps.append((instruction.upper(), rest.strip()))
    return steps


def test_the_dockerfile_copies_what_exists_and_runs_the_talkies_command() -> None:
    steps = _dockerfile()
    for instruction, rest in steps:
        if instruction == "COPY":
            *sources, _target = shlex.split(rest)
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
        if instruction == "ENV":
            for name in re.findall(r"(TALKIES_[A-Z_]+)=", rest):
                assert name in SETTINGS, f"ENV {name} is not a setting"
    entrypoint = [rest for instruction, rest in steps if instruction == "ENTRYPOINT"]
    cmd = [rest for instruction, rest in steps if instruction == "CMD"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ['["talkies"]'] and "talkies" in scripts
    assert cmd and yaml.safe_load(cmd[0])[0] in CLI_COMMANDS
    installs = " ".join(rest for instruction, rest in steps if instruction == "RUN")
    assert "-c constraints.txt" in installs and "requirements-nodeps.txt" in installs


def test_compose_runs_redis_with_aof_the_bots_and_workers() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert {"redis", "discord", "telegram", "worker"} <= set(services)
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    for name in ("discord", "telegram", "worker"):
        service = services[name]
        assert service["command"][0] in CLI_COMMANDS, name
        assert service["environment"]["TALKIES_REDIS_URL"].startswith("redis://redis:")
    # The bots share one SQLite file: the same volume at the database's folder.
    assert services["discord"]["volumes"] == services["telegram"]["volumes"]
    grace = int(str(services["worker"]["stop_grace_period"]).rstrip("s"))
    assert grace > Settings.model_fields["worker_shutdown_grace_s"].default


def test_env_example_and_procfile_name_real_settings_and_commands() -> None:
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert line.split("=", 1)[0] in SETTINGS, line
    for line in (REPO / "Procfile").read_text().splitlines():
        _name, _, command = line.partition(":")
        argv = command.split()
        assert argv[0] in ("talkies", "arq"), line
        if argv[0] == "talkies":
            assert argv[1] in CLI_COMMANDS, line


def test_every_dependency_is_pinned_and_setup_installs_the_pins() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not a pin: {line}"
            pins[_normalise(name)] = version
    for requirement in wanted:
        name = _normalise(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])
        if name != "torch":  # pinned by TORCH_SPEC / the Dockerfile's TORCH_VERSION
            assert name in pins, f"{name} is not pinned in constraints.txt"
    assert "-c constraints.txt" in (REPO / "scripts" / "setup.sh").read_text()
