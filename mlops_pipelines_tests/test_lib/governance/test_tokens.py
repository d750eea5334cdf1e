"""The serving API's bearer tokens: shown once, stored hashed, revocable; and the `mlops tokens` commands."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlops_pipelines.cli import app
from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.lib.governance import tokens


def test_a_token_is_stored_hashed_and_checked_whole(tmp_path: Path) -> None:
    path = tmp_path / "tokens.sqlite"
    info, token = tokens.create(path, actor=" Alice ", role="operator")
    assert info.actor == "alice" and token.startswith(f"mlops_{info.token_id}_")
    secret = token.split("_", 2)[2]
    assert secret.encode() not in path.read_bytes() and oct(path.stat().st_mode)[-3:] == "600"
    assert tokens.authenticate(path, token) == info
    for wrong in (token[:-1], token + "x", f"mlops_{info.token_id}_", "mlops_nosuchid_" + secret, "Bearer", ""):
        with pytest.raises(tokens.InvalidToken) as caught:
            tokens.authenticate(path, wrong)
        assert secret not in str(caught.value)
    with pytest.raises(ValueError, match="role must be one of"):
        tokens.create(path, actor="bob", role="admin")


def test_revoked_tokens_stop_at_once(tmp_path: Path) -> None:
    path = tmp_path / "tokens.sqlite"
    info, token = tokens.create(path, actor="bob", role="approver")
    assert tokens.revoke(path, info.token_id).revoked_at
    with pytest.raises(tokens.InvalidToken, match="revoked"):
        tokens.authenticate(path, token)
    with pytest.raises(NotFound, match="no API token with id 'nope'"):
        tokens.revoke(path, "nope")


def test_the_tokens_commands(data_dir: Path) -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["tokens", "create", "--actor", "carol", "--role", "reviewer"])
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    listed = json.loads(runner.invoke(app, ["tokens", "list", "--json"]).output)
    assert [(t["actor"], t["role"], t["revoked_at"]) for t in listed] == [("carol", "reviewer", None)]
    assert token not in runner.invoke(app, ["tokens", "list"]).output  # shown once, never again
    assert runner.invoke(app, ["tokens", "revoke", listed[0]["token_id"]]).exit_code == 0
    assert json.loads(runner.invoke(app, ["tokens", "list", "--json"]).output)[0]["revoked_at"]
    bad = runner.invoke(app, ["tokens", "create", "--actor", "carol", "--role", "root"])
    assert bad.exit_code == 2 and "must be one of" in bad.output
    assert runner.invoke(app, ["tokens", "revoke", "nope"]).exit_code == 2
