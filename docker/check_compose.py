"""Check docker/docker-compose.yaml without a Docker engine (`make lint` and CI run it):

- the file, interpolated with docker/.env.example as `docker compose` would, parses under the Compose
  Specification (the `compose-spec` package: a strict parser of the spec; unknown keys, misspelled conditions,
  bad durations are refused);
- every variable it uses is listed in .env.example, and .env.example commits no secret value (passwords, keys,
  tokens and webhook URLs are empty there); no secret is written literally in the compose file;
- references hold: depends_on names a service; service_healthy waits on a service with a health check,
  service_completed_successfully on a one-shot; volumes and secrets are declared, secret files live in the
  git-ignored docker/secrets/; every long-running service has a health check;
- third-party images are pinned to a version, published ports bind to loopback, and workspace.yaml points at
  the code-server service and its port.

    python docker/check_compose.py [docker-dir]     # exit 1 listing every problem
"""

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|WEBHOOK_URL|AUTH", re.IGNORECASE)
VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")
PLACEHOLDER = "placeholder"


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as compose reads them (an unquoted value ends at ' #')."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = re.split(r"\s+#", value, maxsplit=1)[0].strip()
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """${VAR}, ${VAR:-default}, ${VAR:?error} and $$, with required-but-empty values filled by a placeholder."""

    def value(match: re.Match[str]) -> str:
        whole, name = match.group(0), match.group(1)
        if env.get(name):
            return env[name]
        if ":-" in whole:
            return whole.split(":-", 1)[1][:-1]
        return PLACEHOLDER

    return VARIABLE.sub(value, text).replace("$$", "$")


def check(directory: Path) -> list[str]:
    compose_path, env_path = directory / "docker-compose.yaml", directory / ".env.example"
    text, env = compose_path.read_text(), read_env_file(env_path)
    problems = [
        f"{env_path.name}: {key} holds a value; secrets are set in docker/.env, never committed"
        for key, value in env.items()
        if SECRET_NAME.search(key) and value
    ]
    problems += [
        f"{compose_path.name}: ${{{name}}} is not listed in {env_path.name}"
        for name in sorted(set(VARIABLE.findall(text)) - set(env))
    ]
    raw = yaml.safe_load(text)
    for service, spec in raw["services"].items():
        for key, value in (spec.get("environment") or {}).items():
            literal = VARIABLE.sub("", str(value))
            if (SECRET_NAME.search(key) and literal.strip()) or re.search(r"://[^/\s:@]+:[^/\s@]+@", literal):
                problems.append(f"{compose_path.name}: {service}.environment.{key} writes a secret literally")
    compose = yaml.safe_load(interpolate(text, env))
    try:
        from compose_spec import PyCompose

        PyCompose.from_json(json.dumps(compose))
    except ValueError as exc:
        problems.append(f"{compose_path.name}: not a valid Compose file: {exc}")
    problems += references(compose, compose_path.name)
    problems += workspace(directory / "workspace.yaml", compose)
    gitignore = (directory / ".gitignore").read_text().split() if (directory / ".gitignore").exists() else []
    problems += [f"docker/.gitignore must ignore {entry}" for entry in (".env", "secrets/") if entry not in gitignore]
    return problems


def references(compose: dict[str, Any], name: str) -> list[str]:
    services: dict[str, dict[str, Any]] = compose["services"]
    problems = []
    volumes, secrets = set(compose.get("volumes") or {}), compose.get("secrets") or {}
    for secret, spec in secrets.items():
        if not str(spec.get("file", "")).startswith("./secrets/"):
            problems.append(f"{name}: secret {secret} must be a file under docker/secrets/ (git-ignored)")
    for service, spec in services.items():
        one_shot = spec.get("restart") == "no"
        health = spec.get("healthcheck") or {}
        if not one_shot and (not health or health.get("disable")):
            problems.append(f"{name}: {service} runs for good but has no health check")
        for target, condition in (spec.get("depends_on") or {}).items():
            wanted = condition.get("condition", "service_started")
            if target not in services:
                problems.append(f"{name}: {service} depends on {target}, which is no service")
            elif wanted == "service_healthy" and not (services[target].get("healthcheck") or {}).get("test"):
                problems.append(f"{name}: {service} waits for {target} to be healthy; {target} has no health check")
            elif wanted == "service_completed_successfully" and services[target].get("restart") != "no":
                problems.append(f"{name}: {service} waits for {target} to complete; {target} is not a one-shot")
            elif wanted == "service_started":
                problems.append(f"{name}: {service} depends on {target} without waiting for it to be healthy")
        for volume in spec.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if not source.startswith((".", "/")) and source not in volumes:
                problems.append(f"{name}: {service} mounts volume {source}, which is not declared")
        problems += [
            f"{name}: {service} uses secret {secret}, which is not declared"
            for secret in spec.get("secrets") or []
            if secret not in secrets
        ]
        image = str(spec.get("image", ""))
        if "build" not in spec and (":" not in image or image.endswith(":latest")):
            problems.append(f"{name}: {service} image {image!r} is not pinned to a version")
        problems += [
            f"{name}: {service} publishes {port!r} on every interface; bind it to 127.0.0.1"
            for port in spec.get("ports") or []
            if not str(port).startswith("127.0.0.1:")
        ]
    return problems + cycles(services, name)


def cycles(services: dict[str, dict[str, Any]], name: str) -> list[str]:
    state: dict[str, str] = {}

    def visit(service: str, path: list[str]) -> list[str]:
        if state.get(service) == "done" or service not in services:
            return []
        if state.get(service) == "open":
            return [f"{name}: depends_on cycle {' -> '.join([*path, service])}"]
        state[service] = "open"
        found = [p for t in services[service].get("depends_on") or {} for p in visit(t, [*path, service])]
        state[service] = "done"
        return found

    return [problem for service in services for problem in visit(service, [])]


def workspace(path: Path, compose: dict[str, Any]) -> list[str]:
    servers = [entry["grpc_server"] for entry in yaml.safe_load(path.read_text())["load_from"]]
    problems = []
    for server in servers:
        spec = compose["services"].get(server["host"])
        if spec is None:
            problems.append(f"{path.name}: grpc_server host {server['host']} is no compose service")
        elif str(server["port"]) not in [str(part) for part in spec.get("command", [])]:
            problems.append(f"{path.name}: {server['host']} does not serve on port {server['port']}")
    return problems


def main() -> None:
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    problems = check(directory)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    services = yaml.safe_load((directory / "docker-compose.yaml").read_text())["services"]
    print(f"docker/docker-compose.yaml: {len(services)} services, Compose Specification and references OK")


if __name__ == "__main__":
    main()
