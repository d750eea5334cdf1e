"""The code location loads and exposes the expected assets, checks, jobs and sensors."""

import dagster as dg

from mlops_pipelines.catalog.feature_views import load_catalog


def test_asset_graph(definitions: dg.Definitions) -> None:
    graph = definitions.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    views = {f"features/{name}" for name in load_catalog().views}
    assert keys == {"raw/market_bars", "raw/quarantined_bars", "features/catalog", "features/online_store", *views}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name == key.path[0].replace("raw", "ingestion"), key
        assert node.owners, key
        assert node.description, key
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
    assert definitions.resolve_job_def("ingestion_job") and definitions.resolve_job_def("features_job")
    sensor = definitions.resolve_sensor_def("raw_files_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED  # synthetic source: nothing to watch


def test_every_warehouse_asset_is_in_the_warehouse_pool(definitions: dg.Definitions) -> None:
    job = definitions.resolve_implicit_global_asset_job_def()
    pools = {node.name: node.definition.pool for node in job.graph.node_dict.values()}
    assert pools and all(pool == "warehouse" for pool in pools.values()), pools
