"""The code location loads and exposes the expected assets, checks, jobs and sensors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.catalog.models import load_model_specs
from mlops_pipelines.catalog.policies import policy_status
from mlops_pipelines.catalog.prompt_library import load_prompts


def test_asset_graph(definitions: dg.Definitions) -> None:
    graph = definitions.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    views = {f"features/{name}" for name in load_catalog().views}
    training = {f"training/{name}_dataset" for name in load_model_specs()} | set(load_model_specs())
    governance = {f"{name}_promotion" for name in load_model_specs()}
    evaluation = {
        f"{name}_{suffix}"
        for name in load_model_specs()
        for suffix in ("backtest", "explanations", "compliance_report")
    }
    assert keys == {
        "raw/market_bars",
        "raw/quarantined_bars",
        "features/catalog",
        "features/online_store",
        "monitoring/feature_drift",
        "monitoring/prediction_drift",
        "monitoring/model_performance",
        "monitoring/model_health",
        "monitoring/served_predictions",
        "monitoring/champion_challenger",
        "governance/audit_pack",
        "governance/kpis",
        *(f"inference/{name}_predictions" for name in load_model_specs()),
        *(f"prompts/{name}_registration" for name in load_prompts()),
        *(f"prompts/{name}_evaluation" for name in load_prompts()),
        *views,
        *training,
        *evaluation,
        *governance,
    }
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        expected_group = {
            "raw": "ingestion",
            "features": "features",
            "monitoring": "monitoring",
            "inference": "inference",
            "prompts": "prompts",
            "governance": "governance",
        }.get(key.path[0], "evaluation" if name in evaluation else "governance" if name in governance else "training")
        assert node.group_name == expected_group, key
        assert node.owners, key
        assert node.description, key
    # lineage runs one way: training -> evaluation -> governance
    for name in load_model_specs():
        assert {k.to_user_string() for k in graph.get(dg.AssetKey(f"{name}_promotion")).parent_keys} == {
            f"{name}_compliance_report"
        }
    cross = graph.get(dg.AssetKey(["features", "cross_sectional"]))
    assert {k.to_user_string() for k in cross.parent_keys} == {
        "raw/market_bars",
        "features/returns",
        "features/volatility",
    }
    assert graph.get(dg.AssetKey(["raw", "market_bars"])).partitions_def is not None


def test_checks_jobs_and_sensors(definitions: dg.Definitions) -> None:
    graph = definitions.resolve_asset_graph()
    checks = {key.name for key in graph.asset_check_keys}
    assert {"market_bars_quarantine_ratio", "market_bars_unique_bars"} <= checks
    assert {f"{name}_declared_schema" for name in load_catalog().views} <= checks
    for job in (
        "ingestion_job",
        "features_job",
        "training_job",
        "approve_model_job",
        "promote_model_job",
        "rollback_model_job",
        "retire_model_job",
        "review_model_job",
        "drift_job",
        "inference_job",
        "prompts_job",
    ):
        assert definitions.resolve_job_def(job), job
    assert {f"{name}_lifecycle_consistent" for name in load_model_specs()} <= checks
    sensor = definitions.resolve_sensor_def("raw_files_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED  # synthetic source: nothing to watch


def test_every_warehouse_asset_is_in_the_warehouse_pool(definitions: dg.Definitions) -> None:
    job = definitions.resolve_implicit_global_asset_job_def()
    pools = {node.name: node.definition.pool for node in job.graph.node_dict.values()}
    assert pools and all(pool == "warehouse" for pool in pools.values()), pools


def test_loading_the_code_location_opens_no_store(tmp_path: Path) -> None:
    """No connection at import or load (a long-lived code server would hold it): a fresh process loads the
    definitions and writes nothing."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_", "DAGSTER_"))}
    env |= {"MLOPS_DATA_DIR": str(data), "DAGSTER_HOME": str(tmp_path / "home")}
    code = "from mlops_pipelines.definitions import defs; d = defs(); d.resolve_asset_graph(); d.resolve_all_job_defs()"
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [], f"loading the definitions wrote {written}"


def test_loading_the_code_location_leaves_the_process_environment_as_it_was(tmp_path: Path) -> None:
    """Importing and loading the definitions reads the environment (once, in defs/resources.py) and changes none of
    it: a setting made for MLflow's downloads belongs to the download, not to the process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_", "DAGSTER_"))}
    env |= {"MLOPS_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home")}
    code = (
        "import os, sys, dagster, mlflow  # what these set for themselves (telemetry ids) is theirs\n"
        "before = dict(os.environ)\n"
        "from mlops_pipelines.definitions import defs; defs().resolve_all_job_defs()\n"
        "changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))\n"
        "sys.exit(f'environment changed: {changed}' if changed else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_broken_policy_file_is_reported_and_the_location_still_loads(tmp_path: Path) -> None:
    """A broken policy file does not stop the code location: the asset that reads it says what is wrong with it;
    everything else loads."""
    bad = tmp_path / "promotion_policy.yaml"
    bad.write_text("defaults:\n  min_sharpe: high\n")
    code = f"""
import json
from pathlib import Path
import mlops_pipelines.catalog.policies as policies
policies.PROMOTION_POLICY_PATH = Path({str(bad)!r})
from mlops_pipelines.definitions import defs
graph = defs().resolve_asset_graph()
keys = graph.get_all_asset_keys()
print(json.dumps({{k.to_user_string(): graph.get(k).metadata.get("promotion_policy") for k in keys}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_", "DAGSTER_"))}
    env |= {"MLOPS_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    status = json.loads(done.stdout.strip().splitlines()[-1])
    gate = status["direction_classifier_promotion"]
    assert gate.startswith("INVALID") and "promotion_policy.yaml" in gate and "defaults.min_sharpe" in gate
    assert status["features/returns"] is None  # assets that do not read it are untouched
    assert policy_status("promotion") == "valid"  # the committed file


def test_the_environment_is_read_in_settings_and_by_the_entry_points_only() -> None:
    """Every variable is read in settings.py; the code location builds its settings in defs/resources.py (once at
    import for the definitions' shape, again for the resources at each load); the CLI per command; the serving
    API at its start (``python -m mlops_pipelines.serving``; ``mlops serve`` is a CLI command); a Celery step
    worker at its start (``celery -A mlops_pipelines.celery_worker worker``). Nothing else
    reads or changes the process environment (tracking.py switches MLflow's progress bar off for a download)."""
    package = Path(__file__).parents[2] / "mlops_pipelines"
    entry_points = {"settings.py", "defs/resources.py", "serving/__main__.py", "celery_worker.py"}
    readers, environ = set(), set()
    for path in package.rglob("*.py"):
        name, text = path.relative_to(package).as_posix(), path.read_text()
        if "from_env(" in text:
            readers.add(name)
        if "os.environ" in text or "os.getenv" in text:
            environ.add(name)
    cli = {name for name in readers | environ if name.startswith("cli/")}  # the `mlops` commands
    assert readers - cli <= entry_points, readers - cli - entry_points
    assert environ - cli <= {"settings.py", "lib/core/tracking.py"}, environ


def test_a_dagster_command_on_the_module_prints_no_location_name_warning(tmp_path: Path) -> None:
    """``dagster ... -m mlops_pipelines.definitions`` (how `dagster job execute` is run) loads the location under
    the module's name: it used to warn, on every command, that the project's code location name does not match."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_", "DAGSTER_"))}
    env |= {"MLOPS_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    dagster = Path(sys.executable).parent / "dagster"
    command = [str(dagster), "definitions", "validate", "-m", "mlops_pipelines.definitions"]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "does not match" not in done.stdout + done.stderr
