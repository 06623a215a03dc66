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
COMMAND_MODULES = ["data", "components", "features", "pretrain", "finetune", "nvs", "i2v", "evaluate", "report", "diagnose",
                   "bench", "released"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lumos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from lumos import __version__

    p.add_argument("--version", action="version", version=f"lumos {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, fn, config=True, parallel=False, **flags):
        """A subcommand running `fn`; `flags` maps option names to (help, argparse keywords)."""
        sp = sub.add_parser(name, help=fn.__doc__, description=fn.__doc__)
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
    sub.add_parser("launch", help="run a command on one process per GPU (see `lumos launch --help`)", add_help=False)
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
    except (FileNotFoundError, FloatingPointError, ValueError, KeyError, WriteError) as err:
        from lumos.config import ConfigError

        kind = "config error" if isinstance(err, ConfigError) else type(err).__name__
        print(f"lumos {args.command}: {kind}: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
