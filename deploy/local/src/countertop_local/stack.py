"""``up``: the embedded servers and the six services under one honcho process manager.

The Procfile (``deploy/local/Procfile``) lists what runs. A server is left out when its variable
(``POSTGRES_URL``, ``KAFKA_BOOTSTRAP_SERVERS``, ``MQTT_URL``) already points at an external one,
which the services then use. Every other entry starts once the servers accept connections, and
the services are announced as their ``/readyz`` answers. Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import datetime
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from honcho.environ import parse_procfile
from honcho.manager import SYSTEM_PRINTER_NAME, Manager
from honcho.printer import Message

from countertop_local.config import (
    SERVER_URL_ENV,
    SERVICES,
    SERVICES_BY_NAME,
    LocalStack,
    Service,
    find_repo_root,
)
from countertop_local.readiness import (
    Endpoint,
    server_endpoints,
    wait_for_servers,
    wait_for_services,
)

READY_MESSAGE = "Countertop is ready"


def default_procfile() -> Path:
    return find_repo_root() / "deploy" / "local" / "Procfile"


LOCAL_ONLY_SETTINGS = {"IDENTITY_SEED_DEMO": "true", "IDENTITY_DEV_CODE_ENDPOINT": "true"}


def child_environment(env: Mapping[str, str], stack: LocalStack) -> dict[str, str]:
    """The environment of every process ``up`` starts."""
    child = dict(env)
    # The Procfile says `python`: make that the interpreter running this stack.
    child["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # Output goes through pipes; unbuffered, it shows up when it is written.
    child["PYTHONUNBUFFERED"] = "1"
    # Services refuse local conveniences (the demo seed, codes in the log, the sandbox provider)
    # in production, the default; this stack is never production, whatever the shell says.
    child["COUNTERTOP_ENV"] = "local"
    child.update(stack.as_env())
    for variable, url in stack.server_urls().items():
        if not env.get(variable):
            child[variable] = url
    for service in SERVICES:
        child.setdefault(f"{service.env_prefix}_PORT", str(service.default_port))
    child.setdefault("LOG_FORMAT", "console")
    # A laptop, not a shop: seed the demo merchant once and let verification codes be read
    # back from identity (both off unless set, as in any real deployment).
    for variable, value in LOCAL_ONLY_SETTINGS.items():
        child.setdefault(variable, value)
    return child


def _exec(command: str) -> str:
    """Honcho runs each command through ``sh -c``; with ``exec`` the process replaces the shell,
    so honcho's signals and exit status are the process's own."""
    return command if command.startswith("exec ") else f"exec {command}"


def _say(events: Any, text: str) -> None:
    """A line from the stack itself, through honcho's event queue so that it never interleaves
    with the processes' output."""
    events.put(
        Message(
            type="line",
            data=text + "\n",
            time=datetime.datetime.now(),
            name=SYSTEM_PRINTER_NAME,
            colour=None,
        )
    )


class _Announcer(threading.Thread):
    """Reports each service as it becomes ready, then that the whole stack is."""

    def __init__(
        self,
        events: Any,
        services: list[Service],
        servers: list[Endpoint],
        env: Mapping[str, str],
    ) -> None:
        super().__init__(name="countertop-ready", daemon=True)
        self._events = events
        self._services = services
        self._servers = servers
        self._env = env
        self.stop = threading.Event()

    def say(self, text: str) -> None:
        _say(self._events, text)

    def run(self) -> None:
        # Honcho forks one helper per process as it starts; polling begins after those forks.
        if self.stop.wait(1.0):
            return
        if not self._services:
            wait_for_servers(self._servers, timeout=None, report=lambda _: None, stop=self.stop)
        wait_for_services(self._services, self._env, timeout=None, report=self.say, stop=self.stop)
        if not self.stop.is_set():
            self.say(READY_MESSAGE)


def up(
    procfile: Path | None = None,
    *,
    infra_only: bool = False,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run the stack until interrupted or until one process exits; returns the exit status."""
    env = dict(os.environ if env is None else env)
    procfile = procfile or default_procfile()
    if not procfile.is_file():
        print(f"no Procfile at {procfile}", file=sys.stderr)
        return 2
    stack = LocalStack.from_env(env)
    child_env = child_environment(env, stack)
    cwd = str(find_repo_root())

    manager = Manager()
    started_servers: list[str] = []
    services: list[Service] = []
    others = 0
    for name, command in parse_procfile(procfile.read_text()).processes.items():
        if name in SERVER_URL_ENV:
            variable = SERVER_URL_ENV[name]
            if env.get(variable):
                _say(manager.events, f"{name}: using {variable}={env[variable]}, not starting one")
                continue
            manager.add_process(name, _exec(command), env=child_env, cwd=cwd)
            started_servers.append(name)
            continue
        if infra_only:
            continue
        manager.add_process(
            name,
            f"python -m countertop_local await-infra && {_exec(command)}",
            env=child_env,
            cwd=cwd,
        )
        if name in SERVICES_BY_NAME:
            services.append(SERVICES_BY_NAME[name])
        else:
            others += 1

    if not started_servers and not services and not others:
        print("nothing to run: every server is external and no service was asked for")
        return 0

    announcer = _Announcer(
        manager.events, services, server_endpoints(child_env, started_servers), child_env
    )
    announcer.start()
    try:
        manager.loop()
    finally:
        announcer.stop.set()
        announcer.join(timeout=5)
    return manager.returncode if manager.returncode is not None else 0
