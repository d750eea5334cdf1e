"""The online store is chosen by settings (MLOPS_ONLINE_STORE): the same asset and the same CLI command write and
read Redis in production, with the password from a mounted file that never reaches the Dagster instance."""

from pathlib import Path

import dagster as dg
import pytest
import redis

from mlops_pipelines.defs.features.assets import online_store
from mlops_pipelines.defs.resources import resources_for
from mlops_pipelines.lib.core.errors import ConfigError
from mlops_pipelines.lib.features.online_store_redis import OnlineStoreUnavailable, RedisOnlineStoreReader
from mlops_pipelines.settings import Settings
from mlops_pipelines_tests.test_cli import invoke
from mlops_pipelines_tests.test_defs.test_secrets import found_in

PASSWORD = "redis-password-4e8a1c07"


@pytest.mark.slow
def test_asset_and_cli_use_redis_when_settings_say_so(
    data_dir: Path, feature_warehouse: Path, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis.Redis.from_url(redis_url).acl_setuser(
        "mlops", enabled=True, passwords=[f"+{PASSWORD}"], keys="*", commands=["+@all"]
    )
    secret_file = tmp_path / "secrets" / "redis_password"
    secret_file.parent.mkdir()
    secret_file.write_text(PASSWORD + "\n")  # as a mounted secret is written, newline included
    user_url = redis_url.replace("redis://", "redis://mlops@")
    monkeypatch.setenv("MLOPS_WAREHOUSE_PATH", str(feature_warehouse))
    monkeypatch.setenv("MLOPS_ONLINE_STORE", "redis")
    monkeypatch.setenv("MLOPS_REDIS_URL", user_url)
    monkeypatch.setenv("MLOPS_REDIS_PASSWORD_FILE", str(secret_file))
    settings = Settings.from_env()
    assert PASSWORD not in repr(settings)

    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result = dg.materialize([online_store], resources=resources_for(settings), instance=instance)
        assert result.success
        metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["location"].value == user_url and metadata["dagster/row_count"].value == 6
    assert not settings.online_store_path.exists()  # nothing went to the SQLite file
    assert found_in(home, [PASSWORD]) == {}

    code, out = invoke("features", "lookup", "SYM0001", "NOPE")
    assert code == 0 and '"NOPE": null' in out and '"ret_1b"' in out, out
    assert settings.online_store().reader().snapshot_id() == result.run_id

    with pytest.raises(OnlineStoreUnavailable, match="refused the credentials"):
        RedisOnlineStoreReader(user_url, password="wrong")
    secret_file.write_text("wrong")  # the file is read at each use: a rotated secret takes effect without restart
    code, out = invoke("features", "lookup", "SYM0001")
    assert code == 2 and "refused the credentials" in out, out


def test_settings_refuse_an_unknown_backend_or_url(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env().online_store().backend == "sqlite"  # the embedded default
    monkeypatch.setenv("MLOPS_ONLINE_STORE", "memcached")
    with pytest.raises(ConfigError, match="MLOPS_ONLINE_STORE must be 'sqlite' or 'redis', got 'memcached'"):
        Settings.from_env()
    monkeypatch.setenv("MLOPS_ONLINE_STORE", "redis")
    monkeypatch.setenv("MLOPS_REDIS_URL", "http://cache:6379")
    with pytest.raises(ConfigError, match="MLOPS_REDIS_URL must be a redis://"):
        Settings.from_env()
    monkeypatch.setenv("MLOPS_REDIS_URL", "redis://127.0.0.1:9/0")
    monkeypatch.setenv("MLOPS_REDIS_PASSWORD_FILE", str(data_dir / "absent"))
    with pytest.raises(ConfigError, match="MLOPS_REDIS_PASSWORD_FILE: cannot read .*absent"):
        Settings.from_env().online_store()
    monkeypatch.delenv("MLOPS_REDIS_PASSWORD_FILE")
    with pytest.raises(OnlineStoreUnavailable, match=r"redis://127.0.0.1:9/0 unreachable"):
        Settings.from_env().online_store().reader()
