"""`lumos launch`: run a lumos command on one process per GPU, over one or several nodes."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Callable


def launch(argv: list[str], run: Callable[[list[str]], None]) -> None:
    """`lumos launch --processes N [--nodes M] -- <command> ...`: run a command on N processes.

    One process: the command runs here. More: `accelerate launch` starts one process per GPU;
    `--processes auto` (the workflow's GPU rules outside SLURM) takes one per GPU the job sees;
    on several nodes (one launcher per node, started by srun) the rendezvous comes from SLURM's
    environment (node rank SLURM_NODEID, the first host of SLURM_JOB_NODELIST). SIGUSR1/SIGTERM
    are forwarded to every worker so they checkpoint before a time limit or pre-emption.
    """
    # `run` runs a command in this process: `lumos.cli.main`, which passes itself (so the launcher
    # never imports the command line that dispatches to it)
    p = argparse.ArgumentParser(prog="lumos launch", description=launch.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", default="1",
                   help="total processes (= GPUs) over all nodes, or 'auto': one per GPU this job sees (1 on a CPU)")
    p.add_argument("--nodes", type=int, default=1, help="nodes (one launcher per node)")
    p.add_argument("--port", type=int, default=29500 + int(os.environ.get("SLURM_JOB_ID", "0")) % 1000)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the lumos command and its options")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given after --")
    args.processes = local_processes() if args.processes == "auto" else int(args.processes)
    if args.processes <= 1:
        return run(command)
    import torch

    if torch.cuda.is_available():
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", str(args.processes), "--num_machines", str(args.nodes)]
    elif args.nodes == 1:  # CPU (tests, CI): torchrun's processes talk over gloo; accelerate picks it up
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.processes),
               "--master_port", str(args.port)]
    else:
        sys.exit("lumos launch: several nodes need GPUs (no CUDA device here)")
    if args.nodes > 1 and torch.cuda.is_available():
        cmd += ["--machine_rank", os.environ.get("SLURM_NODEID", "0"), "--main_process_ip", first_slurm_host(),
                "--main_process_port", str(args.port)]
    cmd += ["-m", "lumos.cli", *command]  # torchrun and accelerate launch both take `-m module args`
    print("lumos launch:", " ".join(cmd), file=sys.stderr, flush=True)
    child = subprocess.Popen(cmd, start_new_session=True)
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, lambda s, _f: os.killpg(child.pid, s))
    sys.exit(child.wait())


def first_slurm_host() -> str:
    """The first host name of this SLURM job's node list (the rendezvous address)."""
    hosts = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]],
                           capture_output=True, text=True, check=True).stdout.split()
    return hosts[0]


def local_processes() -> int:
    """One process per CUDA device this job sees (CUDA_VISIBLE_DEVICES), 1 without CUDA."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    print(f"lumos launch: {max(n, 1)} process(es) on this machine's {n} visible GPU(s)" if n else
          "lumos launch: no GPU visible: one process", file=sys.stderr, flush=True)
    return max(n, 1)
