"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries, `initdb` in a temporary directory, a
free port on 127.0.0.1, stopped and deleted at the end. PostgreSQL refuses to run as root, so as root the server
runs as the `postgres` user the package creates (through `runuser`)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

USER = "ballast"


def bin_dir() -> Path:
    """Returns the directory of `initdb` and `pg_ctl`: on the PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: `make test` installs Debian's postgresql package")
    return Path(versions[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A running server; `url(name)` creates database `name` and returns its `postgresql://` URL."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port
        self._admin = sa.create_engine(self._url("postgres", "postgresql+psycopg"), isolation_level="AUTOCOMMIT")

    def _url(self, database: str, scheme: str = "postgresql") -> str:
        return f"{scheme}://{USER}@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
        return self._url(database)

    def close(self) -> None:
        self._admin.dispose()


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Runs a PostgreSQL server for the duration of the block (fsync off: the tests' data is thrown away)."""
    binaries = bin_dir()
    directory = Path(tempfile.mkdtemp(prefix="ballast-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    data, port = directory / "data", _free_port()
    run = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    subprocess.run(_as_server_user([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", USER,
                                    "-E", "UTF8", "--no-sync"]), **run)  # type: ignore[call-overload]
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data), "-w"]
    subprocess.run(_as_server_user([*pg_ctl, "-o", options, "-l", str(directory / "log"), "start"]),
                   **run)  # type: ignore[call-overload]
    server = PostgresServer(directory, port)
    try:
        yield server
    finally:
        server.close()
        subprocess.run(_as_server_user([*pg_ctl, "-m", "immediate", "stop"]), **run)  # type: ignore[call-overload]
        shutil.rmtree(directory, ignore_errors=True)
