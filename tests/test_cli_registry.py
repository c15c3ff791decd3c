"""Every command module is registered by ``openclap.cli`` itself: ``openclap COMMAND --help`` works through
``cli.main`` for each module in ``openclap/commands`` (tests elsewhere use ``cli.build_parser``, never a
parser of their own, so a command dropped from the CLI fails here and there)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import pytest

import openclap.commands
from openclap import cli


def _names_registered_by(module_name: str) -> list[str]:
    """The subcommand names ``module.add_parser`` registers on a fresh parser."""
    sub = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(module_name).add_parser(sub)
    return list(sub.choices)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


MODULES = sorted(f"openclap.commands.{m.name}" for m in pkgutil.iter_modules(openclap.commands.__path__))


def test_every_command_module_is_in_the_cli() -> None:
    assert len(MODULES) >= 13 and sorted(cli.COMMAND_MODULES) == MODULES
    registered = _subcommands(cli.build_parser())
    expected = [name for m in MODULES for name in _names_registered_by(m)]
    assert sorted(registered) == sorted(expected)
    for name in ("train", "tokenizer", "pretrain-audio", "eval", "embed", "serve", "convert", "caption"):
        assert name in registered


@pytest.mark.parametrize("module", MODULES)
def test_help_of_each_command_through_cli_main(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    for name in _names_registered_by(module):
        with pytest.raises(SystemExit) as done:
            cli.main([name, "--help"])
        assert done.value.code == 0
        assert f"openclap {name}" in capsys.readouterr().out
