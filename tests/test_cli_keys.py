"""`circuit keys`: add, list, set and revoke, read and written through the store."""

from __future__ import annotations

import pytest

from circuit.keys import hash_secret
from tests.support.cli import ANSI_ESCAPE, Cli, days_ago, one_line_error, record, today_at


@pytest.fixture
def cli(tmp_path, monkeypatch) -> Cli:
    return Cli(tmp_path, monkeypatch)


def keys_by_name(cli: Cli) -> dict:
    store = cli.store()
    try:
        return {row.name: row for row in store.load_keys()}
    finally:
        store.close()


def fingerprint(cli: Cli) -> str:
    store = cli.store()
    try:
        return store.keys_fingerprint()
    finally:
        store.close()


# -- add ------------------------------------------------------------------------------------------

def test_add_prints_the_secret_once_and_stores_only_its_hash(cli):
    result = cli("keys", "add", "alice")
    secret = next(w for w in result.stdout.split() if w.startswith("sk-circuit-"))
    row = keys_by_name(cli)["alice"]
    assert row.key_hash == hash_secret(secret)
    assert secret.startswith(row.key_prefix) and len(row.key_prefix) < len(secret)
    assert secret not in cli.db_path.read_bytes().decode("latin-1")


def test_add_json_prints_name_and_key_only(cli):
    data = cli.json("keys", "add", "ci")
    assert set(data) == {"name", "key"}
    assert data["name"] == "ci" and data["key"].startswith("sk-circuit-")


def test_add_creates_the_database_when_there_is_none(cli):
    assert not cli.db_path.exists()
    cli("keys", "add", "first")
    assert cli.db_path.is_file()


def test_add_stores_the_limits_given(cli):
    cli("keys", "add", "alice", "--daily-limit", "2.5", "--rpm", "60", "--tpm", "10000")
    row = keys_by_name(cli)["alice"]
    assert (row.daily_limit_usd, row.rpm, row.tpm) == (2.5, 60, 10000)


def test_add_refuses_a_name_that_is_taken_and_suggests_a_free_one(cli):
    cli.add_key("alice")
    cli.add_key("alice-2")
    line = one_line_error(cli("keys", "add", "alice", code=2))
    assert "a key named 'alice' exists already; names are never reused" in line
    assert "`circuit keys add alice-3`" in line and "revoke" not in line


def test_add_after_revoke_says_names_are_never_reused_and_why_without_advising_revoke(cli):
    cli.add_key("team-a")
    cli("keys", "revoke", "team-a")
    line = one_line_error(cli("keys", "add", "team-a", code=2))
    assert "'team-a' exists already (revoked)" in line
    assert "records and spend stay attributable to it" in line
    assert "`circuit keys add team-a-2`" in line and "keys revoke" not in line
    cli("keys", "add", "team-a-2")  # the suggestion works


@pytest.mark.parametrize("name", ["config-1", "has space", ".dot", "x" * 65])
def test_add_refuses_an_invalid_name(cli, name):
    result = cli("keys", "add", name, code=2)
    assert "invalid key name" in one_line_error(result)


@pytest.mark.parametrize("flags", [("--daily-limit", "lots"), ("--daily-limit", "-1"),
                                   ("--rpm", "0"), ("--tpm", "1.5")])
def test_add_refuses_a_malformed_limit(cli, flags):
    result = cli("keys", "add", "alice", *flags, code=2)
    assert flags[0] in one_line_error(result)
    assert not cli.db_path.exists()


# -- list -----------------------------------------------------------------------------------------

def test_list_json_shows_limits_and_only_todays_spend(cli):
    cli.add_key("alice", "--daily-limit", "5", "--rpm", "60")
    cli.add_key("bob")
    cli.seed(record("r1", key_name="alice", cost_micros=1_500_000, timestamp=today_at(0, 5)),
             record("r2", key_name="alice", cost_micros=250_000, timestamp=today_at(0, 6)),
             record("r3", key_name="alice", cost_micros=9_000_000, timestamp=days_ago(1)))
    data = cli.json("keys", "list")
    assert data["default_daily_limit_usd"] == 10.0
    assert data["day"] == today_at(0)[:10]
    alice, bob = data["keys"]
    assert alice == {"name": "alice", "source": "table", "key_prefix": alice["key_prefix"],
                     "daily_limit_usd": 5.0, "rpm": 60, "tpm": None, "spend_today_usd": 1.75,
                     "unpriced_today": 0, "created_at": alice["created_at"],
                     "revoked_at": None, "active": True}
    assert alice["key_prefix"].startswith("sk-circuit-")
    assert bob["daily_limit_usd"] is None and bob["spend_today_usd"] == 0


def test_list_prints_a_plain_table_when_piped(cli):
    cli.add_key("alice", "--daily-limit", "5")
    out = cli("keys", "list").stdout
    assert "alice" in out and "$5.00" in out and "active" in out
    assert ANSI_ESCAPE not in out


def test_list_shows_the_default_limit_for_keys_without_their_own(cli):
    cli.add_key("bob")
    out = cli("keys", "list").stdout
    assert "$10.00†" in out and "gateway default" in out


def test_list_without_a_database_exits_2_and_creates_none(cli):
    result = cli("keys", "list", code=2)
    assert one_line_error(result) == (
        f"error: no database at {cli.db_path}; name the gateway's with --db PATH or "
        "CIRCUIT_DB_PATH (the gateway creates its database when it starts)")
    assert not cli.db_path.exists()


def test_a_missing_relative_database_is_named_with_the_folder_it_was_looked_for_in(
        cli, monkeypatch):
    monkeypatch.delenv("CIRCUIT_DB_PATH")
    line = one_line_error(cli("keys", "list", code=2))
    assert f"no database at data/circuit.db (in {cli.folder})" in line
    assert "--db" in line and "CIRCUIT_DB_PATH" in line and "keys add" not in line


def test_adding_a_key_says_when_it_created_a_new_database_and_how_to_serve_it(cli):
    first = cli("keys", "add", "alice")
    assert f"Created a new database at {cli.db_path}" in first.stderr
    assert f"`circuit --db {cli.db_path} serve`" in " ".join(first.stderr.split())
    assert "Created a new database" not in cli("keys", "add", "bob").stderr


def test_global_db_option_chooses_the_database(cli, tmp_path):
    other = tmp_path / "other.db"
    cli("--db", str(other), "keys", "add", "elsewhere")
    assert other.is_file() and not cli.db_path.exists()
    names = [k["name"] for k in cli.json("--db", str(other), "keys", "list")["keys"]]
    assert names == ["elsewhere"]


# -- set ------------------------------------------------------------------------------------------

def test_set_changes_limits_and_the_keys_fingerprint(cli):
    cli.add_key("alice")
    before = fingerprint(cli)
    data = cli.json("keys", "set", "alice", "--daily-limit", "7.5", "--rpm", "30")
    assert (data["daily_limit_usd"], data["rpm"], data["tpm"]) == (7.5, 30, None)
    assert fingerprint(cli) != before


def test_set_off_clears_a_limit(cli):
    cli.add_key("alice", "--daily-limit", "3", "--tpm", "500")
    cli("keys", "set", "alice", "--daily-limit", "off", "--tpm", "off")
    row = keys_by_name(cli)["alice"]
    assert row.daily_limit_usd is None and row.tpm is None


def test_set_without_a_change_is_a_usage_error(cli):
    cli.add_key("alice")
    assert "nothing to change" in one_line_error(cli("keys", "set", "alice", code=2))


def test_set_on_an_unknown_key_exits_2(cli):
    cli.add_key("alice")
    assert "no key named 'bob'" in one_line_error(cli("keys", "set", "bob", "--rpm", "5",
                                                      code=2))


# -- revoke ---------------------------------------------------------------------------------------

def test_revoke_marks_the_key_revoked_and_changes_the_fingerprint(cli):
    cli.add_key("alice")
    before = fingerprint(cli)
    data = cli.json("keys", "revoke", "alice")
    assert data["active"] is False and data["revoked_at"]
    assert keys_by_name(cli)["alice"].revoked_at == data["revoked_at"]
    assert fingerprint(cli) != before


def test_revoking_twice_keeps_the_first_revocation(cli):
    cli.add_key("alice")
    first = cli.json("keys", "revoke", "alice")["revoked_at"]
    result = cli("keys", "revoke", "alice")
    assert "already revoked" in result.stdout
    assert keys_by_name(cli)["alice"].revoked_at == first


def test_revoke_on_an_unknown_key_exits_2(cli):
    cli.add_key("alice")
    assert "no key named 'bob'" in one_line_error(cli("keys", "revoke", "bob", code=2))


def test_revoke_without_a_database_exits_2(cli):
    assert "no database at" in one_line_error(cli("keys", "revoke", "alice", code=2))
    assert not cli.db_path.exists()


def test_a_key_can_be_exempted_from_the_default_daily_limit(cli):
    cli.add_key("internal")
    row = cli.json("keys", "set", "internal", "--daily-limit", "unlimited")
    assert row["daily_limit_usd"] == -1.0
    assert "unlimited" in cli("keys", "list").stdout


# -- keys from CIRCUIT_API_KEYS -------------------------------------------------------------------

CONFIG_KEYS = "test-key,sk-configured-second-key-0123456789"


def test_list_json_includes_the_configured_keys_by_prefix_with_their_spend(cli, monkeypatch):
    monkeypatch.setenv("CIRCUIT_API_KEYS", CONFIG_KEYS)
    cli.add_key("alice")
    cli.seed(record("r1", key_name="config-2", cost_micros=2_000_000))
    keys = cli.json("keys", "list")["keys"]
    assert [(k["name"], k["source"]) for k in keys] == [
        ("alice", "table"), ("config-1", "config"), ("config-2", "config")]
    first, second = keys[1:]
    assert first["key_prefix"] == "test" and second["key_prefix"] == "sk-configured-s"
    assert second["spend_today_usd"] == 2.0 and first["spend_today_usd"] == 0
    assert first["active"] and first["revoked_at"] is None and first["created_at"] is None


def test_list_shows_the_configured_keys_marked_and_never_whole(cli, monkeypatch):
    monkeypatch.setenv("CIRCUIT_API_KEYS", CONFIG_KEYS)
    cli.add_key("alice")
    out = cli("keys", "list").stdout
    assert "config-1" in out and "config-2" in out and "CIRCUIT_API_KEYS" in out
    assert "test-key" not in out and "sk-configured-second-key" not in out


def test_spend_on_an_unpriced_model_is_shown_as_unpriced_not_as_zero(cli):
    cli.add_key("alice")
    cli.seed(record("r1", key_name="alice", model="my-finetune", upstream_model="my-finetune",
                    cost_micros=None))
    out = cli("keys", "list").stdout
    assert "unpriced" in out and "$0" not in out
    assert '[prices."MODEL"]' in out
    assert cli.json("keys", "list")["keys"][0]["unpriced_today"] == 1
