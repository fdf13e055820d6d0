"""Run two versions of selfinstruct side by side: the working tree and a git ref installed into a
temporary folder (benchmarks/bench_generate_throughput.py's scenario r uses this).

The baseline is exported with ``git archive REF | tar -x`` (reads the object store only: no worktree
entry, no index lock, nothing to undo in a repository that other people are working in at the same
time) and installed with the running interpreter's pip as a regular, non-editable install::

    python -m pip install --no-deps --no-build-isolation --target TMP/site TMP/src

not editable, because the project maps top-level folders (filters/, seeds/, train_sft/) into the
``selfinstruct`` package with setuptools' package-dir, and the venv's editable finder for the working
tree would otherwise resolve ``selfinstruct.filters`` to the working tree's filters/.

The source export is deleted once installed. Each version runs in its own interpreter (``PYTHONPATH=TMP/site`` for the baseline, the checkout's
root for the working tree; the current folder, which Python puts first on sys.path, is an empty
scratch folder), through a small wrapper that imports ``selfinstruct`` and ``selfinstruct.filters``,
prints their ``__file__`` (``BENCH_FILES ...`` on stderr), refuses to go on unless every loaded
``selfinstruct*`` module lives under the version's own folders, then runs ``selfinstruct.cli`` as
``python -m selfinstruct.cli ...`` would (``runpy``), and checks the loaded modules again at the end.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in the child interpreter: python -c WRAPPER <cli args>
WRAPPER = r"""
import os, runpy, sys
roots = [os.path.realpath(r) for r in os.environ["BENCH_EXPECT_ROOTS"].split(os.pathsep)]

def leaks():
    bad = []
    for name, mod in sorted(sys.modules.items()):
        if name == "selfinstruct" or name.startswith("selfinstruct."):
            f = getattr(mod, "__file__", None)
            if f and not any(os.path.realpath(f).startswith(r + os.sep) for r in roots):
                bad.append(f"{name}={f}")
    return bad

import selfinstruct, selfinstruct.filters
print("BENCH_FILES", selfinstruct.__file__, selfinstruct.filters.__file__, file=sys.stderr, flush=True)
if leaks():
    print("BENCH_LEAK", *leaks(), file=sys.stderr, flush=True)
    sys.exit(97)
sys.argv = ["selfinstruct"] + sys.argv[1:]
code = 0
try:
    runpy.run_module("selfinstruct.cli", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
if leaks():
    print("BENCH_LEAK", *leaks(), file=sys.stderr, flush=True)
    sys.exit(97)
sys.exit(code)
"""


class VersionError(RuntimeError):
    pass


@dataclass
class Version:
    """One selfinstruct to run: ``pythonpath`` goes first on sys.path; every ``selfinstruct*``
    module must come from under one of ``roots``."""
    name: str
    label: str                      # for reports: "working tree" or the commit
    pythonpath: Path
    roots: list[Path]
    files: tuple[str, str] | None = field(default=None)   # selfinstruct, selfinstruct.filters

    def run_cli(self, args: list[str], env: dict[str, str], cwd: Path,
                timeout: float) -> subprocess.CompletedProcess:
        """``python -m selfinstruct.cli ARGS`` in this version; raises VersionError if the process
        fails or imports selfinstruct from anywhere else."""
        env = dict(env, PYTHONPATH=str(self.pythonpath),
                   BENCH_EXPECT_ROOTS=os.pathsep.join(str(r) for r in self.roots))
        proc = subprocess.run([sys.executable, "-c", WRAPPER, *args], env=env, cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=timeout)
        files = [line.split()[1:3] for line in proc.stderr.splitlines()
                 if line.startswith("BENCH_FILES ")]
        if files:
            self.files = (files[0][0], files[0][1])
        if proc.returncode == 97:
            leak = [line for line in proc.stderr.splitlines() if line.startswith("BENCH_LEAK")]
            raise VersionError(f"{self.name} ({self.label}) imported selfinstruct from outside "
                               f"{[str(r) for r in self.roots]}: {leak}")
        if proc.returncode != 0 or not files:
            tail = "\n".join(proc.stderr.splitlines()[-25:])
            raise VersionError(f"{self.name} ({self.label}) failed with status {proc.returncode}:"
                               f"\n{tail}")
        return proc


def working_tree() -> Version:
    return Version("ours", "working tree", ROOT,
                   [ROOT / "selfinstruct", ROOT / "filters", ROOT / "seeds", ROOT / "train_sft"])


def resolve(ref: str) -> str:
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise VersionError(f"--baseline {ref!r} is not a commit of {ROOT}")
    return proc.stdout.strip()


def install(ref: str, tmp: Path, name: str = "baseline") -> Version:
    """Export ``ref`` to tmp/name/src and pip-install it (not editable) into tmp/name/site."""
    sha = resolve(ref)
    src, site = tmp / name / "src", tmp / name / "site"
    src.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", "--format=tar", sha], cwd=ROOT,
                               stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", str(src)], stdin=archive.stdout)
    archive.stdout.close()
    if archive.wait() != 0 or untar.returncode != 0:
        raise VersionError(f"git archive {sha} | tar -x failed")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                          "--disable-pip-version-check", "--no-input", "--quiet",
                          "--target", str(site), str(src)],
                         env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if pip.returncode != 0:
        raise VersionError(f"pip install of {sha} failed:\n{pip.stdout[-3000:]}")
    if not (site / "selfinstruct" / "filters" / "__init__.py").is_file():
        raise VersionError(f"pip install of {sha} did not produce {site}/selfinstruct/filters")
    shutil.rmtree(src, ignore_errors=True)     # the only selfinstruct left under tmp is site's
    return Version(name, sha[:12], site, [site / "selfinstruct"])


def make_tmp(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
