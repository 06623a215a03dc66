"""envs/lumos.yaml, the conda env of every lumos rule under `--sdm conda`: its pip list against
pyproject.toml's dependencies and `workflow` extra, those against what the lumos package imports,
and the post-deploy script that installs the package into it. Offline and fast: no conda, nothing
installed. (That the core dependencies alone run the pipelines: tests/test_core_install.py.)"""

import ast
import functools
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
ENVS = ROOT / "envs"
LUMOS_ENV = ENVS / "lumos.yaml"
POST_DEPLOY = ENVS / "lumos.post-deploy.sh"  # Snakemake's name for it: the env file's .yaml -> .post-deploy.sh

# Declared in pyproject (`workflow` extra) for the environment that runs Snakemake, not needed in
# the rules' env (rules run the `lumos` CLI; Snakemake, also inside SLURM jobs, runs from its own
# environment).
SNAKEMAKE_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}

# lumos files that rules run in another conda env, by path (found in rules/*.smk below), with the
# top-level modules they import from that env's own repository rather than from a distribution.
# Their imports are checked against that env's file, not against pyproject.
OTHER_ENV_MODULES = {
    "lumos/tasks/lgm_run.py": ("lgm.yaml", {"core"}),      # rule lgm_reconstruct; `core` is LGM's (--repo)
    "lumos/eval/mmdet_config.py": ("geneval.yaml", set()),  # rule geneval_official
}
# The captioner env (rule caption) runs `python -m lumos caption` from the checkout; that command
# also runs in the main environment (`lumos caption` by hand), so its imports stay in the check.

# Imported only inside `try: ... except ImportError` with a clear error, and not installed by
# design (docs/tasks.md says so): DreamSim for PIC at paper scale (lumos/eval/video.py).
OPTIONAL_IMPORTS = {"dreamsim"}


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared_requirements() -> list[str]:
    """pyproject's core dependencies and its `workflow` extra: what the workflow runs with."""
    project = _pyproject()
    return [*project["dependencies"], *project["optional-dependencies"]["workflow"]]


def _key(req: Requirement):
    return canonicalize_name(req.name), str(req.specifier), req.marker and str(req.marker)


def _env(path: Path):
    """(conda package names, pip Requirements) of a conda env file."""
    deps = yaml.safe_load(path.read_text())["dependencies"]
    conda = {re.split(r"[=<>!\s]", d, maxsplit=1)[0] for d in deps if isinstance(d, str)}
    pip = [Requirement(r) for d in deps if isinstance(d, dict) for r in d.get("pip", []) if not r.startswith("-")]
    return conda, pip


def _third_party_imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file (module level and inside functions),
    without the standard library and lumos itself."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "lumos"}


@functools.cache
def _packages_distributions():
    return importlib.metadata.packages_distributions()


def _distributions(module: str) -> set[str]:
    dists = _packages_distributions().get(module)
    assert dists, f"'{module}' is imported by lumos but no installed distribution provides it"
    return {canonicalize_name(d) for d in dists}


def test_lumos_env_pins_match_pyproject():
    project = _pyproject()
    declared = {_key(Requirement(r)) for r in declared_requirements()}
    conda, pip = _env(LUMOS_ENV)
    in_env = {_key(r) for r in pip}
    assert in_env == {k for k in declared if k[0] not in SNAKEMAKE_ONLY}, (
        f"only in envs/lumos.yaml: {sorted(in_env - declared)}; "
        f"only in pyproject: {sorted(k for k in declared - in_env if k[0] not in SNAKEMAKE_ONLY)}"
    )
    assert len(pip) == len(in_env), "a requirement is listed twice in envs/lumos.yaml"
    python = next(d for d in yaml.safe_load(LUMOS_ENV.read_text())["dependencies"]
                  if isinstance(d, str) and d.startswith("python="))
    assert python.split("=")[1] in SpecifierSet(project["requires-python"])
    assert "pip" in conda


def test_lumos_imports_are_declared():
    declared = {canonicalize_name(Requirement(r).name) for r in declared_requirements()}
    missing, workflow_only = {}, {}
    for path in sorted((ROOT / "lumos").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in OTHER_ENV_MODULES:
            continue
        for module in _third_party_imports(path) - OPTIONAL_IMPORTS:
            dists = _distributions(module)
            if not dists & declared:
                missing.setdefault(module, []).append(rel)
            if dists & SNAKEMAKE_ONLY:  # would be missing from the rules' env
                workflow_only.setdefault(module, []).append(rel)
    assert not missing, f"imported by lumos, not in pyproject's dependencies or extras (nor envs/lumos.yaml): {missing}"
    assert not workflow_only, f"imports of distributions left out of envs/lumos.yaml: {workflow_only}"


def test_extras_split_core_from_the_workflow():
    """The `workflow` extra shares nothing with the core dependencies; `dev` installs it (the
    README's `pip install -e '.[dev]'` still gives everything)."""
    project = _pyproject()
    core = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    workflow = {canonicalize_name(Requirement(r).name) for r in extras["workflow"]}
    assert workflow and not core & workflow and SNAKEMAKE_ONLY <= workflow
    dev = [Requirement(r) for r in extras["dev"]]
    assert any(canonicalize_name(r.name) == "lumos" and r.extras == {"workflow"} for r in dev)
    assert {"pytest", "snakefmt"} <= {canonicalize_name(r.name) for r in dev}


def test_optional_imports_are_guarded():
    """What OPTIONAL_IMPORTS skips is only imported inside `try: ... except ImportError`."""
    for path in (ROOT / "lumos").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        guarded = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                h.type is not None and "ImportError" in ast.unparse(h.type) for h in node.handlers
            ):
                for stmt in node.body:
                    guarded.update(_third_party_imports_of(stmt))
        for module in _third_party_imports(path) & OPTIONAL_IMPORTS:
            assert module in guarded, f"{path}: '{module}' is imported without an ImportError guard"


def _third_party_imports_of(stmt) -> set[str]:
    if isinstance(stmt, ast.Import):
        return {a.name.split(".")[0] for a in stmt.names}
    if isinstance(stmt, ast.ImportFrom) and stmt.level == 0:
        return {stmt.module.split(".")[0]}
    return set()


def _rules():
    """{rule name: (conda env file name or None, lumos files named by path, runs `python -m lumos`)}."""
    rules = {}
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        blocks = re.split(r"^rule (\w+):\n", smk.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            env = re.search(r'^\s+conda:\s*\n\s+"\.\./envs/([\w.-]+)"', body, flags=re.M)
            files = {
                "/".join(ast.literal_eval(f"({args},)"))
                for args in re.findall(r"os\.path\.join\(workflow\.basedir,\s*([^)]*)\)", body)
            }
            rules[name] = (env and env.group(1), {f for f in files if f.startswith("lumos/")},
                           "python -m lumos" in body)
    return rules


def test_other_env_modules_are_what_the_rules_run():
    rules = _rules()
    assert rules, "no rules parsed from rules/*.smk"
    other = {}
    for name, (env, files, python_m) in rules.items():
        if env is None or env == "lumos.yaml":
            continue
        assert not python_m or env == "captioner.yaml", f"rule {name} runs lumos in {env}: check its imports"
        for f in files:
            other[f] = env
    assert other == {f: env for f, (env, _) in OTHER_ENV_MODULES.items()}
    # every lumos rule names envs/lumos.yaml: the env this file checks
    assert sum(env == "lumos.yaml" for env, _, _ in rules.values()) > 30


@pytest.mark.parametrize("rel", sorted(OTHER_ENV_MODULES))
def test_other_env_module_imports_are_in_their_env(rel):
    env_file, from_repo = OTHER_ENV_MODULES[rel]
    conda, pip = _env(ENVS / env_file)
    names = {canonicalize_name(n) for n in conda} | {canonicalize_name(r.name) for r in pip}
    for module in _third_party_imports(ROOT / rel) - from_repo:
        assert _distributions(module) & names, f"{rel} imports '{module}', not in envs/{env_file}"


@pytest.fixture
def fake_env(tmp_path):
    """A stand-in of an activated conda env: `python` only records its arguments; the env's bin
    has a `lumos` (what pip would have installed)."""
    prefix = tmp_path / "env"
    (prefix / "bin").mkdir(parents=True)
    log = tmp_path / "python.log"
    python = prefix / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\n')
    lumos = prefix / "bin" / "lumos"
    lumos.write_text("#!/bin/sh\n")
    for f in (python, lumos):
        f.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "LUMOS_ROOT"}
    env.update(PATH=f"{prefix / 'bin'}{os.pathsep}{env['PATH']}", CONDA_PREFIX=str(prefix))
    return env, log


def _run_post_deploy(tmp_path, env, cwd):
    """Run it as Snakemake 9 does (snakemake/deployment/conda.py, Env.create): a copy beside the
    env, <conda-prefix>/<hash>.post-deploy.sh, run with the shebang's interpreter from Snakemake's
    working directory."""
    copy = tmp_path / ".snakemake" / "conda" / "0123abcd.post-deploy.sh"
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(POST_DEPLOY, copy)
    interpreter = POST_DEPLOY.read_text().splitlines()[0][2:].split()
    return subprocess.run([*interpreter, str(copy)], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_post_deploy_installs_the_repository(tmp_path, fake_env):
    env, log = fake_env
    assert POST_DEPLOY.read_text().startswith("#!/usr/bin/env bash\n")
    out = _run_post_deploy(tmp_path, env, cwd=ROOT)  # Snakemake started from the checkout
    assert out.returncode == 0, out.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == f"-m pip install --no-deps --editable {ROOT.resolve()}"
    assert calls[1].startswith("-c import lumos, av")

    log.unlink()  # another working directory: refused, unless LUMOS_ROOT names the checkout
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    out = _run_post_deploy(tmp_path, env, cwd=elsewhere)
    assert out.returncode != 0 and "LUMOS_ROOT" in out.stderr and not log.exists()
    out = _run_post_deploy(tmp_path, {**env, "LUMOS_ROOT": str(ROOT / "envs" / "..")}, cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert log.read_text().splitlines()[0] == f"-m pip install --no-deps --editable {ROOT.resolve()}"
