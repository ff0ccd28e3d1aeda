"""Settings: validation errors name the key and the file; secrets from the environment."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.config import ConfigError, load_settings, settings_from_dict

ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_is_valid() -> None:
    settings = load_settings(ROOT / "config.example.toml", env={})
    assert settings.server.port == 8080
    assert settings.accounts["demo"].mode == "safe"
    assert settings.business.timezone == "Asia/Shanghai"


def test_server_port_is_the_first_port_line_of_the_example() -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    first = next(line for line in text.splitlines() if line.strip().startswith("port ="))
    assert (
        int(first.split("=")[1]) == load_settings(ROOT / "config.example.toml", env={}).server.port
    )


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[server]\nport = 0\n", "server.port", "greater than or equal to 1"),
        ("[server]\nprot = 80\n", "server.prot", "unknown key"),
        (
            "[accounts.a]\nappid='x'\ntoken='tok'\nencoding_aes_key='short'\n",
            "accounts.a.encoding_aes_key",
            "must be 43 characters",
        ),
        ("[accounts.a]\nappid='x'\ntoken='tok'\n", "accounts.a", "encoding_aes_key is required"),
        (
            "[accounts.a]\nappid='x'\ntoken='tok'\nmode='plaintext'\ntype='club'\n",
            "accounts.a.type",
            "'subscription' or 'service'",
        ),
        ("[business]\ntimezone='Mars/Olympus'\n", "business.timezone", "unknown time zone"),
        ("[database]\nurl='mysql://x'\n", "database.url", "sqlite:// or postgres://"),
        ("[redis]\ntimeout_seconds=0\n", "redis.timeout_seconds", "greater than 0"),
        ("[redis]\nconnect_timeout_seconds='x'\n", "redis.connect_timeout_seconds", "number"),
        (
            "[accounts.a]\nappid='x'\ntoken='${MISSING_TOKEN}'\nmode='plaintext'\n",
            "accounts.a.token",
            "MISSING_TOKEN is not set",
        ),
    ],
)
def test_errors_name_the_key_and_the_file(
    tmp_path: Path, text: str, key: str, fragment: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: ")
    assert fragment in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[server\nport=1")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(path, env={})


def test_secrets_come_from_the_environment(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "[accounts.a]\nappid='x'\ntoken='${OA_TOKEN}'\nsecret='${OA_SECRET}'\nmode='plaintext'\n",
    )
    settings = load_settings(path, env={"OA_TOKEN": "tok123", "OA_SECRET": "s3cret"})
    assert settings.accounts["a"].token == "tok123"
    assert settings.accounts["a"].secret == "s3cret"


def test_database_and_redis_urls_can_come_from_env(tmp_path: Path) -> None:
    path = _write(tmp_path, "")
    settings = load_settings(
        path, env={"SCRM_DATABASE_URL": "postgres://u@h/db", "SCRM_REDIS_URL": "redis://h:1/0"}
    )
    assert settings.database.url == "postgres://u@h/db"
    assert settings.redis.url == "redis://h:1/0"


def test_settings_are_frozen() -> None:
    settings = load_settings(ROOT / "config.example.toml", env={})
    with pytest.raises(Exception, match="frozen"):
        settings.server.port = 1  # type: ignore[misc]


def test_cli_config_error_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "[server]\nport = 'eighty'\n")
    assert main(["--config", str(path), "migrate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{path}: server.port:" in err


def test_cli_missing_file_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", "/nonexistent/x.toml", "migrate"]) == 2
    assert "file not found" in capsys.readouterr().err


def test_cli_usage_error_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


async def test_the_example_settings_start_the_app(make_client: Any, database: str) -> None:
    """What ``make run`` starts: the example settings' start-up steps (rewards upserted…)."""
    from storage.models import Reward

    raw = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    raw["database"] = {"url": database}
    settings = settings_from_dict(raw, {}, "config.example.toml")
    client = await make_client(settings)
    assert (await client.get("/healthz")).status == 200
    assert await Reward.filter(source="config").count() == len(settings.rewards) > 0


def test_services_build_before_the_database_is_open() -> None:
    # serve builds its services first and opens the database in the app's start-up, so
    # start-up checks (SOP rules, templates) must not need a connection
    from bot.app import build_services

    settings = load_settings(Path(__file__).resolve().parent.parent / "config.example.toml", {})
    assert build_services(settings).settings.sop.rules
