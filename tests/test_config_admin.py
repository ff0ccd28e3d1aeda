"""``[admin]`` tokens: a bad token, role or name is a settings error naming the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from bot.config import ConfigError, load_settings

GOOD = "a" * 24
OTHER = "b" * 32


def _tokens(*tokens: tuple[str, str, str]) -> str:
    return "".join(
        f"[[admin.tokens]]\nname = '{name}'\nrole = '{role}'\ntoken = '{token}'\n"
        for name, role, token in tokens
    )


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        (_tokens(("pos", "integration", "short-token")), "admin.tokens.0.token", "at least 24"),
        (_tokens(("pos", "integration", "x" * 23)), "admin.tokens.0.token", "at least 24"),
        (
            _tokens(("a", "admin", GOOD), ("pos", "root", OTHER)),
            "admin.tokens.1.role",
            "'admin', 'manager', 'staff' or 'integration'",
        ),
        (
            _tokens(("pos", "admin", GOOD), ("pos", "staff", OTHER)),
            "admin.tokens",
            "token names must be unique",
        ),
        (
            _tokens(("a", "admin", GOOD), ("b", "staff", GOOD)),
            "admin.tokens",
            "two tokens have the same value",
        ),
        (_tokens(("a b", "admin", GOOD)), "admin.tokens.0.name", "should match pattern"),
        ("[admin]\ntokens = []\nsecret = 'x'\n", "admin.secret", "unknown key"),
    ],
)
def test_admin_token_errors_name_the_key_and_the_file(
    tmp_path: Path, text: str, key: str, fragment: str
) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: ")
    assert fragment in message
    assert GOOD not in message  # a token's value is never echoed


def test_a_missing_token_variable_names_it(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(_tokens(("pos", "integration", "${SCRM_POS_TOKEN}")), encoding="utf-8")
    with pytest.raises(ConfigError, match="SCRM_POS_TOKEN is not set") as info:
        load_settings(path, env={})
    assert str(info.value).startswith(f"{path}: admin.tokens")
    settings = load_settings(path, env={"SCRM_POS_TOKEN": OTHER})
    assert settings.admin.tokens[0].token == OTHER


def test_the_cli_reports_a_bad_token_in_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(_tokens(("pos", "integration", "short")), encoding="utf-8")
    assert main(["--config", str(path), "migrate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{path}: admin.tokens.0.token:" in err
