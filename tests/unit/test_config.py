"""The settings `tarry serve` reads: each one documented, and parsed strictly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tarry.config import _RENAMED, Config, ConfigError, _Environment

README = (Path(__file__).parents[2] / "README.md").read_text()


def _variable(field: str, alias: object) -> str:
    return alias if isinstance(alias, str) else f"TARRY_{field.upper()}"


def test_every_variable_is_in_the_readmes_configuration_table() -> None:
    table = README.split("## Configuration", 1)[1].split("\n\n| flag |", 1)[1]
    rows = table.split("\n\n", 1)[0].splitlines()
    documented = {v for row in rows for v in re.findall(r"`((?:TARRY|REDIS)_[A-Z_]+)`",
                                                        row.split("|")[2])}
    read = {_variable(name, f.validation_alias)
            for name, f in _Environment.model_fields.items()}
    assert "TARRY_FIRST_STEP_BUDGET" in read and "REDIS_URL" in read
    assert read - documented == set(), "variables the README's table does not list"


def test_every_variable_sets_a_config_field() -> None:
    fields = set(Config.__dataclass_fields__)
    assert {_RENAMED.get(n, n) for n in _Environment.model_fields} <= fields


def test_the_first_step_budget() -> None:
    assert Config.from_env({}).first_step_budget == 0.005
    assert Config.from_env({"TARRY_FIRST_STEP_BUDGET": "0"}).first_step_budget == 0.0
    assert Config.from_env({"TARRY_FIRST_STEP_BUDGET": "0.02"}).first_step_budget == 0.02
    with pytest.raises(ConfigError, match="TARRY_FIRST_STEP_BUDGET='-1'"):
        Config.from_env({"TARRY_FIRST_STEP_BUDGET": "-1"})
