"""The `lumos` command line: one subcommand per pipeline step; the Snakemake rules call these.

Each command takes `--cfg JSON`, the config slice it reads ({dotted key: value}, built by the
rule with `lumos.config.config_slice`), validated against the schema, so Snakemake reruns a step
exactly when its own settings change and a wrong value fails naming its key. The commands are
thin adapters in `lumos/commands/`, one module per pipeline stage, registered below.

    python -m lumos --help
    python -m lumos <command> --help
"""

from __future__ import annotations

import argparse
import importlib
import sys

# One module per pipeline stage; a new task registers its command module here.
COMMAND_MODULES = ["data", "components", "features", "pretrain", "finetune", "export", "nvs", "i2v", "evaluate",
                   "report", "diagnose", "bench", "released"]


# The heading each command module's commands are listed under in `lumos --help` (a module not
# named here is listed under its own name).
STAGE_TITLES = {"data": "data", "components": "components", "features": "features", "pretrain": "pretrain (I2I)",
                "finetune": "finetune (T2I)", "export": "export (diffusers pipelines)", "nvs": "nvs", "i2v": "i2v",
                "evaluate": "evaluate", "report": "report", "diagnose": "diagnostics", "bench": "benchmarks",
                "released": "released weights"}
LAUNCH_HELP = "Run a command on one process per GPU (see `lumos launch --help`)."
# Top-level modules of pyproject's `workflow` extra (tests/test_core_install.py checks them): a
# command that needs one, run where only the core is installed, says which extra to install.
WORKFLOW_MODULES = {"snakemake", "cleanfid", "lpips", "skimage", "scipy", "pandas", "matplotlib", "pyarrow", "av"}


def summary(doc: str | None) -> str:
    """The first sentence of a command's docstring, on one line."""
    text = " ".join((doc or "").split())
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def grouped_commands(stages: dict[str, list[tuple[str, str]]], width: int = 100) -> str:
    """`lumos --help`'s command list: a heading per stage, then each command and its summary."""
    import textwrap

    names = [name for commands in stages.values() for name, _ in commands]
    column = 4 + max(map(len, names)) + 2
    lines = ["commands, by stage (`lumos <command> --help` for one command's flags):"]
    for stage, commands in stages.items():
        lines.append(f"\n  {stage}:")
        for name, doc in commands:
            lines += textwrap.wrap(summary(doc), width, initial_indent=f"    {name:<{column - 4}}",
                                   subsequent_indent=" " * column, break_on_hyphens=False) or [f"    {name}"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lumos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from lumos import __version__

    p.add_argument("--version", action="version", version=f"lumos {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="<command>", title="command",
                           help="one of the commands below, by stage")
    stages: dict[str, list[tuple[str, str]]] = {}

    def add(name, fn, /, config=True, parallel=False, **flags):
        """A subcommand running `fn`; `flags` maps option names to (help, argparse keywords) (a flag
        may be called `name`: the command's name and `fn` are positional only)."""
        stages.setdefault(STAGE_TITLES.get(module, module), []).append((name, fn.__doc__))
        sp = sub.add_parser(name, description=fn.__doc__)  # listed in the epilog, not by argparse
        if config:
            sp.add_argument("--cfg", default="{}", help="JSON: the config slice this step reads {dotted key: value}")
            sp.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
        for flag, (help_, kw) in flags.items():
            sp.add_argument(f"--{flag.replace('_', '-')}", help=help_, **kw)
        if parallel:
            sp.add_argument("--part", type=int, default=0, help="this job's index among --parts parallel jobs")
            sp.add_argument("--parts", type=int, default=1, help="number of parallel jobs sharing the work")
        sp.set_defaults(func=fn)
        return sp

    for module in COMMAND_MODULES:
        importlib.import_module(f"lumos.commands.{module}").register(add)
    sub.add_parser("launch", add_help=False)
    stages["launch"] = [("launch", LAUNCH_HELP)]
    p.epilog = grouped_commands(stages)
    return p


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["launch"]:
        from lumos.launch import launch

        return launch(argv[1:], run=main)
    args = build_parser().parse_args(argv)
    from lumos.utils import WriteError

    try:
        args.func(args)
    except ModuleNotFoundError as err:
        if (err.name or "").partition(".")[0] not in WORKFLOW_MODULES:
            raise
        print(f"lumos {args.command}: {err}: this command needs the workflow extra "
              f"(pip install 'lumos[workflow]', or '.[workflow]' in the checkout)", file=sys.stderr)
        sys.exit(1)
    except (FileNotFoundError, FloatingPointError, ValueError, KeyError, WriteError) as err:
        from lumos.config import ConfigError

        kind = "config error" if isinstance(err, ConfigError) else type(err).__name__
        print(f"lumos {args.command}: {kind}: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
