"""`lumos --help` lists every command once, under the heading of its pipeline stage, in the
order of `COMMAND_MODULES`; `lumos <command> --help` is each command's own docstring and flags."""

import argparse
import re

import pytest
import subprocess
import sys
import types

from lumos import cli


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _listed(help_text: str) -> dict[str, list[str]]:
    """{stage heading: command names} as `lumos --help` lists them."""
    stages, current = {}, None
    for line in help_text.split("commands, by stage", 1)[1].splitlines()[1:]:
        if m := re.fullmatch(r"  (\S.*):", line):
            current = stages.setdefault(m.group(1), [])
        elif m := re.match(r"    (\S+)  ", line):
            current.append(m.group(1))
    return stages


def test_help_groups_every_command_by_stage():
    parser = cli.build_parser()
    stages = _listed(parser.format_help())
    titles = [cli.STAGE_TITLES.get(m, m) for m in cli.COMMAND_MODULES] + ["launch"]
    assert list(stages) == titles
    stage_order = ["data", "components", "features", "pretrain (I2I)", "finetune (T2I)", "nvs", "i2v", "evaluate",
                   "report", "diagnostics", "benchmarks", "released weights", "launch"]
    assert [t for t in titles if t in stage_order] == stage_order
    listed = [name for names in stages.values() for name in names]
    assert sorted(listed) == sorted(_subparsers(parser)) and len(listed) == len(set(listed))
    assert stages["data"][0] == "data" and "train-component" in stages["components"]
    assert "finetune" in stages["finetune (T2I)"] and "nvs-train" in stages["nvs"]


def test_command_help_is_the_commands_docstring():
    from lumos.commands.data import cmd_data

    sub = _subparsers(cli.build_parser())
    text = sub["data"].format_help()
    assert text.startswith("usage: lumos data [-h] [--cfg CFG]") and "--split SPLIT" in text
    assert sub["data"].description == cmd_data.__doc__


def test_a_module_without_a_title_is_listed_under_its_name(monkeypatch):
    fake = types.ModuleType("lumos.commands.toy")

    def cmd_toy(args):
        """Make a toy. More words here."""

    fake.register = lambda add: add("toy", cmd_toy)
    monkeypatch.setitem(sys.modules, "lumos.commands.toy", fake)
    monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, "toy"])
    help_text = cli.build_parser().format_help()
    assert _listed(help_text)["toy"] == ["toy"]
    assert re.search(r"\n    toy +Make a toy\.\n", help_text)


def test_lumos_help_runs():
    out = subprocess.run([sys.executable, "-m", "lumos", "--help"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("usage: lumos [-h] [--version] <command> ...") and "\n  released weights:\n" in out


@pytest.mark.parametrize("missing, extra_named", [("pandas", True), ("not_a_workflow_module", False)])
def test_a_missing_workflow_module_names_the_extra(monkeypatch, capsys, missing, extra_named):
    fake = types.ModuleType("lumos.commands.toy")

    def cmd_toy(args):
        """Import a package."""
        raise ModuleNotFoundError(f"No module named '{missing}'", name=missing)

    fake.register = lambda add: add("toy", cmd_toy, config=False)
    monkeypatch.setitem(sys.modules, "lumos.commands.toy", fake)
    monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, "toy"])
    if not extra_named:
        with pytest.raises(ModuleNotFoundError):
            cli.main(["toy"])
        return
    with pytest.raises(SystemExit) as exit_:
        cli.main(["toy"])
    assert exit_.value.code == 1 and "pip install 'lumos[workflow]'" in capsys.readouterr().err
