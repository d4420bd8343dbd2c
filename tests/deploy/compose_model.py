"""docker/compose.yaml, docker/.env.example, docker/Dockerfile and docker/nginx.conf read as data,
and the environment variables gradcam_site's settings read (from their source, with `ast`)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.tools import DOCKER_DIR, REPO

COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
ENV_EXAMPLE = DOCKER_DIR / ".env.example"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
NGINX_CONF = DOCKER_DIR / "nginx.conf"
APP_DOCKERFILE = "docker/Dockerfile"

# gradcam_site/env.py's readers and the standard library's; the first argument is the name.
_ENV_READERS = {
    "env_str",
    "env_bool",
    "env_int",
    "env_float",
    "env_list",
    "env_dir",
    "env_header",
    "env_header_value",
    "getenv",
}


def settings_variables() -> set[str]:
    """Every environment variable read by a module of gradcam_site (settings.py and whatever
    else uses gradcam_site.env), found in the source: calls of the readers above,
    os.environ.get(...) and os.environ[...] with a literal name."""
    names: set[str] = set()
    for path in sorted((REPO / "gradcam_site").glob("*.py")):
        if path.name == "env.py":
            continue  # the readers themselves (their argument is a parameter, not a name)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                function = node.func
                called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
                environ_get = (
                    isinstance(function, ast.Attribute)
                    and function.attr in {"get", "setdefault"}
                    and isinstance(function.value, ast.Attribute)
                    and function.value.attr == "environ"
                )
                if called in _ENV_READERS or environ_get:
                    names.add(str(node.args[0].value))
            elif (
                isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "environ"
                and isinstance(node.slice, ast.Constant)
            ):
                names.add(str(node.slice.value))
    return names


def load_compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")))


def env_example() -> tuple[dict[str, str], dict[str, str]]:
    """(variables to fill in, optional variables with their defaults) of docker/.env.example:
    `NAME=value` lines and `# NAME=default` lines."""
    required: dict[str, str] = {}
    optional: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        active = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        commented = re.fullmatch(r"#\s*([A-Z][A-Z0-9_]*)=(\S*)", line.strip())
        if active:
            required[active.group(1)] = active.group(2)
        elif commented:
            optional[commented.group(1)] = commented.group(2)
    return required, optional


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def references(text: str) -> list[tuple[str, str, str]]:
    """(name, operator, argument) of every ${...} in a compose value ("$$" is a literal "$")."""
    return [match.groups(default="") for match in _REFERENCE.finditer(text.replace("$$", ""))]


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's interpolation of one value, as `docker compose config` does it."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2) or "", match.group(3) or ""
        present = name in variables and (variables[name] != "" or ":" not in operator)
        if operator.endswith("?") and not present:
            raise ValueError(f"${{{name}}} is required: {argument}")
        if operator.endswith("-") and not present:
            return argument
        return variables.get(name, "")

    return _REFERENCE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def service_environment(service: dict[str, Any], *, base: Path = DOCKER_DIR) -> dict[str, str]:
    """A service's environment as compose builds it: its env_file(s), then `environment:`
    (a mapping or a list of NAME=value), uninterpolated."""
    environment: dict[str, str] = {}
    env_files = service.get("env_file") or []
    for entry in [env_files] if isinstance(env_files, str | dict) else env_files:
        path = entry["path"] if isinstance(entry, dict) else entry
        for line in (base / path).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#") and "=" in line:
                name, _, value = line.partition("=")
                environment[name.strip()] = value.strip()
    declared = service.get("environment") or {}
    if isinstance(declared, list):
        declared = dict(item.partition("=")[::2] for item in declared)
    environment.update({str(name): "" if value is None else str(value) for name, value in declared.items()})
    return environment


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the platform's own code with its settings (built from docker/Dockerfile
    and given an environment): web, workers, migrations."""
    return {
        name: service
        for name, service in compose["services"].items()
        if (service.get("build") or {}).get("dockerfile") == APP_DOCKERFILE and service.get("environment")
    }


@dataclass(frozen=True)
class DockerfileFacts:
    base_images: list[str]
    copies: list[list[str]]  # sources of each COPY without --from
    env: dict[str, str]
    user: str
    healthcheck: str
    cmd: str
    text: str


def dockerfile_facts(path: Path = DOCKERFILE) -> DockerfileFacts:
    text = path.read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", text)
    args = dict(re.findall(r"^ARG\s+([A-Z_]+)=(\S+)", logical, flags=re.M))
    bases = [
        re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        for image in re.findall(r"^FROM\s+(\S+)", logical, flags=re.M)
    ]
    copies = []
    for line in re.findall(r"^COPY\s+(.+)$", logical, flags=re.M):
        if "--from=" in line:
            continue
        words = [w for w in line.split() if not w.startswith("--")]
        copies.append(words[:-1])
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV\s+(.+)$", logical, flags=re.M):
        for name, quoted, bare in re.findall(r'([A-Z_][A-Z0-9_]*)=(?:"([^"]*)"|(\S+))', block):
            env[name] = quoted or bare
    users = re.findall(r"^USER\s+(\S+)", logical, flags=re.M)
    healthchecks = re.findall(r"^HEALTHCHECK\s+(.+)$", logical, flags=re.M)
    cmds = re.findall(r"^CMD\s+(.+)$", logical, flags=re.M)
    return DockerfileFacts(
        base_images=bases,
        copies=copies,
        env=env,
        user=users[-1] if users else "root",
        healthcheck=healthchecks[-1] if healthchecks else "",
        cmd=cmds[-1] if cmds else "",
        text=text,
    )
