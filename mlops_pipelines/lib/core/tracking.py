"""The one MLflow adapter: explicit tracking and registry URIs, one run per training, ended in ``finally``.

Why not dagster-mlflow: its resource and ``end_mlflow_on_run_finished`` hook are a beta, op-oriented
integration that drives MLflow's process-global fluent state from environment variables and ends runs from a
hook (dagster#21872), which does not fit one MLflow run per asset materialization with a status that reflects
that step. We use ``MlflowClient`` with URIs passed explicitly everywhere: a process left at MLflow's default URI
would create its own store (or the deprecated file store) and lose the runs.
"""

import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse
from urllib.request import url2pathname

import lightgbm as lgb
import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Dataset as DatasetEntity
from mlflow.entities import DatasetInput, InputTag, Run, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.lightgbm import log_model as log_lightgbm_model
from mlflow.models import infer_signature

from mlops_pipelines.lib.core.errors import ConfigError, MlopsError, NotFound
from mlops_pipelines.lib.core.files import sha256_file

MODEL_FILE = "model.lgb"
DAGSTER_RUN_TAG = "dagster_run_id"  # every training run carries the id of the Dagster run that trains
FAILURE_REASON_TAG = "failure_reason"
_PROGRESS_BAR_VARIABLE = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


class TrackingConfigError(ConfigError):
    """A tracking or registry URI that would lose runs (empty, or the deprecated file store)."""


class ArtifactIntegrityError(MlopsError, RuntimeError):
    """A model artifact's sha256 differs from the value recorded at registration."""


@dataclass(frozen=True)
class LoggedModel:
    model_uri: str
    model_id: str
    artifact_sha256: str


_INITIALIZED: set[tuple[str, str]] = set()  # stores this process has made sure exist


@contextmanager
def _quiet_download() -> Iterator[None]:
    """An artifact download without MLflow's progress bar (it only clutters run logs; MLflow reads the switch from
    the environment when a download starts). A value the operator set is respected; the environment is restored."""
    if _PROGRESS_BAR_VARIABLE in os.environ:
        yield
        return
    os.environ[_PROGRESS_BAR_VARIABLE] = "false"
    try:
        yield
    finally:
        os.environ.pop(_PROGRESS_BAR_VARIABLE, None)


def file_uri_path(uri: str) -> str:
    """The local path of a ``file://`` URI."""
    return url2pathname(urlparse(uri).path)


class Tracking:
    """MLflow tracking + registry at explicit URIs."""

    def __init__(self, tracking_uri: str, registry_uri: str, artifact_root: str) -> None:
        for label, uri in (("tracking", tracking_uri), ("registry", registry_uri)):
            if not uri:
                raise TrackingConfigError(f"MLflow {label} URI is empty; set it explicitly")
            if uri.startswith("file:") or "://" not in uri:
                raise TrackingConfigError(
                    f"MLflow {label} URI {uri!r} is a file store (deprecated, no registry); use sqlite:/// or a server"
                )
        self.tracking_uri, self.registry_uri, self.artifact_root = tracking_uri, registry_uri, artifact_root
        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)

    def client(self) -> MlflowClient:
        """An MLflow client at our URIs. The process's first one for a SQLite store creates (and migrates) an
        empty store under a file lock: MLflow's stores do it without one, and two processes starting together
        race."""
        if (self.tracking_uri, self.registry_uri) in _INITIALIZED or not self.tracking_uri.startswith("sqlite:///"):
            return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
        database = Path(self.tracking_uri.removeprefix("sqlite:///"))
        with open(database.with_name(database.name + ".init.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
            client.search_experiments(max_results=1)  # both stores exist before the lock is released
            client.search_registered_models(max_results=1)
        _INITIALIZED.add((self.tracking_uri, self.registry_uri))
        return client

    def root_uri(self) -> str:
        """The artifact root as a URI (a local path made absolute). A URI is kept as it is: ``s3://...``, or the
        tracking server's proxied ``mlflow-artifacts:/`` (the server stores the files; the client holds no
        storage credentials)."""
        if len(urlparse(self.artifact_root).scheme) > 1:  # one letter: a Windows drive, a path
            return self.artifact_root.rstrip("/")
        return Path(self.artifact_root).resolve().as_uri()

    def experiment_id(self, name: str) -> str:
        """The experiment's id, created under the artifact root when new. A local experiment found stored under
        another local root whose copy is under ours (the data directory was copied or moved) is moved to ours
        first (``relocate``), so new runs never write into the directory it was copied from."""
        client = self.client()
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            if self.relocate(experiment.artifact_location, f"{self.root_uri()}/{name}"):
                experiment = client.get_experiment(experiment.experiment_id)
            return experiment.experiment_id
        location = self.root_uri()
        try:
            return client.create_experiment(name, artifact_location=f"{location}/{name}")
        except MlflowException as exc:  # another process created it meanwhile
            if exc.error_code != "RESOURCE_ALREADY_EXISTS" or (found := client.get_experiment_by_name(name)) is None:
                raise
            return found.experiment_id

    def relocate(self, stored: str, expected: str) -> bool:
        """Point every location the SQLite store keeps under ``stored`` (an experiment's artifact location, its
        runs', logged models' and model versions') at ``expected`` instead, when both are local directories, differ,
        and ``expected`` exists: a store copied with its data directory, whose absolute locations still name the
        original. Nothing else is rewritten (a root deliberately moved without its files keeps what it had).
        Returns whether it rewrote anything."""
        if stored == expected or not (stored.startswith("file://") and expected.startswith("file://")):
            return False
        if not self.tracking_uri.startswith("sqlite:///") or not Path(file_uri_path(expected)).is_dir():
            return False
        columns = {
            "experiments": ("artifact_location",),
            "runs": ("artifact_uri",),
            "logged_models": ("artifact_location",),
            "model_versions": ("source", "storage_location"),
        }
        with closing(sqlite3.connect(self.tracking_uri.removeprefix("sqlite:///"), timeout=60)) as db, db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table, names in columns.items():
                for column in names if table in tables else ():
                    db.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                        f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                        [expected, len(stored) + 1, stored, len(stored) + 1, stored + "/"],
                    )
        return True

    @contextmanager
    def run(self, experiment: str, *, run_name: str, tags: dict[str, str]) -> Iterator[Run]:
        """One MLflow run; FINISHED on success, FAILED (and re-raised) on any exception."""
        client = self.client()
        run = client.create_run(self.experiment_id(experiment), run_name=run_name, tags=tags)
        status = RunStatus.to_string(RunStatus.FAILED)
        try:
            yield run
            status = RunStatus.to_string(RunStatus.FINISHED)
        finally:
            client.set_terminated(run.info.run_id, status=status)

    @contextmanager
    def _fluent(self, run_id: str) -> Iterator[None]:
        """MLflow's model and dataset logging only has a fluent API: point it at our URIs and our run."""
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri)
        with mlflow.start_run(run_id=run_id):
            yield

    def log_booster(self, run_id: str, booster: lgb.Booster, example: pd.DataFrame) -> LoggedModel:
        """Log a LightGBM booster in its native text format (no pickle) with signature and input example."""
        signature = infer_signature(example, booster.predict(example))
        with self._fluent(run_id):
            info = log_lightgbm_model(
                booster,
                name="model",
                signature=signature,
                input_example=example,
                # explicit requirements: inferring them imports and probes the environment (seconds per run)
                pip_requirements=[f"lightgbm=={lgb.__version__}", f"mlflow=={mlflow.__version__}"],
            )
        with tempfile.TemporaryDirectory() as tmp, _quiet_download():
            local = Path(download_artifacts(artifact_uri=self.artifact_location(info.model_uri), dst_path=tmp))
            sha = sha256_file(local / MODEL_FILE)
        return LoggedModel(model_uri=info.model_uri, model_id=info.model_id, artifact_sha256=sha)

    def log_dataset(self, run_id: str, frame: pd.DataFrame, *, name: str, digest: str, table: str) -> None:
        """The run's dataset input: schema, profile and our full-content hash (MLflow keeps 36 characters).

        MLflow infers a schema by walking every value in Python (about 45 s for 1M x 20); the schema is
        inferred from a sample instead, while the profile states the full frame's size.
        """
        sample = from_pandas(frame.head(1000), name=name, targets="label", digest=digest[:36]).to_dict()
        dataset = DatasetEntity(
            name=sample["name"],
            digest=sample["digest"],
            source_type=sample["source_type"],
            source=sample["source"],
            schema=sample.get("schema"),
            profile=json.dumps({"num_rows": len(frame), "num_elements": int(frame.size)}),
        )
        tags = [InputTag("mlflow.data.context", "training"), InputTag("table", table), InputTag("dataset_hash", digest)]
        self.client().log_inputs(run_id, datasets=[DatasetInput(dataset=dataset, tags=tags)])

    def log_dict(self, run_id: str, data: dict[str, Any], artifact_file: str) -> None:
        self.client().log_text(run_id, json.dumps(data, indent=2, sort_keys=True, default=str), artifact_file)

    def read_text_artifact(self, run_id: str, path: str) -> str:
        return read_text_artifact(self.client(), run_id, path)

    def read_bytes_artifact(self, run_id: str, path: str) -> bytes:
        """An artifact's content; ``NotFound`` when the run or the artifact does not exist."""
        with tempfile.TemporaryDirectory() as tmp, _quiet_download(), _not_found(run_id, path):
            return Path(self.client().download_artifacts(run_id, path, tmp)).read_bytes()

    def artifact_paths(self, run_id: str, folder: str) -> list[str]:
        """The paths of the run's artifacts in ``folder`` (not recursive), sorted."""
        return sorted(a.path for a in self.client().list_artifacts(run_id, folder))

    def log_files(self, run_id: str, files: dict[str, bytes | str], folder: str) -> None:
        """Several small artifacts (name -> content) into one folder of the run, in one upload."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                (Path(tmp) / name).write_bytes(content if isinstance(content, bytes) else content.encode())
            self.client().log_artifacts(run_id, tmp, folder)

    def artifact_location(self, source: str) -> str:
        """Where a model's files are. MLflow resolves a ``models:/<model id>`` URI with its process-global
        tracking URI, not ours (a fresh process would look in ./mlruns): resolve it with our client instead."""
        if source.startswith("models:/m-"):
            return self.client().get_logged_model(source.removeprefix("models:/")).artifact_location
        return source

    def load_verified_booster(self, source: str, expected_sha256: str) -> lgb.Booster:
        """Download a registered model, check its sha256, then load the native file (never a pickle), after a
        load-and-predict probe in a child process: LightGBM aborts the whole process on some malformed files."""
        with tempfile.TemporaryDirectory() as tmp:
            with _quiet_download():
                local = Path(download_artifacts(artifact_uri=self.artifact_location(source), dst_path=tmp))
            path = local / MODEL_FILE
            actual = sha256_file(path)
            if actual != expected_sha256:
                raise ArtifactIntegrityError(
                    f"{source}/{MODEL_FILE} has sha256 {actual}, but {expected_sha256} was recorded at registration"
                )
            probe_model_file(path, actual)
            return lgb.Booster(model_file=str(path))


_PROBED: set[str] = set()  # sha256 of model files this process has seen load and predict in a child process
_PROBE = """
import sys, numpy, lightgbm
booster = lightgbm.Booster(model_file=sys.argv[1])
booster.predict(numpy.zeros((2, booster.num_feature())))
"""


def probe_model_file(path: Path, sha256: str, timeout_s: float = 120.0) -> None:
    """Load the file and predict two rows in a child process; ``ArtifactIntegrityError`` if that fails or crashes.
    Once per file content and process."""
    if sha256 in _PROBED:
        return
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as exc:
        raise ArtifactIntegrityError(f"{path.name}: loading it did not finish within {timeout_s:.0f}s") from exc
    if done.returncode != 0:
        how = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
        last = (done.stderr.strip().splitlines() or [""])[-1]
        raise ArtifactIntegrityError(f"{path.name} is not a loadable LightGBM model ({how}): {last}")
    _PROBED.add(sha256)


def fail_runs_of_dead_dagster_runs(
    client: MlflowClient,
    experiments: Iterable[str],
    dagster_run_alive: Callable[[str], bool],
    *,
    found_by: str,
) -> list[str]:
    """Mark FAILED every RUNNING MLflow run of ``experiments`` whose Dagster run is no longer alive.

    ``Tracking.run`` ends its run in ``finally``, which a killed process (SIGKILL, the out-of-memory killer)
    never reaches: such a run would show RUNNING forever. Runs without a Dagster run tag are left alone. Each
    run ended here gets a ``failure_reason`` tag naming its Dagster run and ``found_by``. Returns their ids.
    """
    ids = [e.experiment_id for name in experiments if (e := client.get_experiment_by_name(name)) is not None]
    if not ids:
        return []
    ended = []
    for run in client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=1000):
        dagster_run_id = run.data.tags.get(DAGSTER_RUN_TAG)
        if dagster_run_id is None or dagster_run_alive(dagster_run_id):
            continue
        reason = f"Dagster run {dagster_run_id} ended while this run was RUNNING (its process was killed); {found_by}"
        client.set_tag(run.info.run_id, FAILURE_REASON_TAG, reason)
        client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.FAILED))
        ended.append(run.info.run_id)
    return ended


def git_commit(repo: Path) -> str:
    head = repo / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref_path = repo / ".git" / ref[5:]
            if ref_path.exists():
                return ref_path.read_text().strip()
            packed = (repo / ".git" / "packed-refs").read_text().splitlines()
            return next(line.split()[0] for line in packed if line.endswith(ref[5:]))
        return ref
    except (OSError, StopIteration):
        return "unknown"


def package_versions(
    names: tuple[str, ...] = ("dagster", "duckdb", "lightgbm", "mlflow", "numpy", "pandas"),
) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def read_text_artifact(client: MlflowClient, run_id: str, path: str) -> str:
    """An artifact's text; ``NotFound`` when the run or the artifact does not exist."""
    with tempfile.TemporaryDirectory() as tmp, _quiet_download(), _not_found(run_id, path):
        return Path(client.download_artifacts(run_id, path, tmp)).read_text()


def run_ui_url(ui_url: str, experiment_id: str, run_id: str, artifact_path: str = "") -> str:
    """Where a browser opens a run in the MLflow UI at ``ui_url`` (MLOPS_MLFLOW_UI_URL); with ``artifact_path``,
    the run's artifact view opened on that file (MLflow 3's route ``#/experiments/<id>/runs/<run>/artifacts/<path>``),
    which renders an HTML report in the page."""
    url = f"{ui_url.rstrip('/')}/#/experiments/{quote(experiment_id)}/runs/{quote(run_id)}"
    return f"{url}/artifacts/{quote(artifact_path.strip('/'))}" if artifact_path else url


@contextmanager
def _not_found(run_id: str, path: str) -> Iterator[None]:
    """MLflow's "does not exist" as our ``NotFound``; any other MLflow failure stays what it is."""
    try:
        yield
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        message = f"MLflow run {run_id} has no artifact {path!r} (or there is no such run): {exc.message}"
        raise NotFound(message) from exc
