"""Running the scripts of ``benchmarks/`` from the tests: as a child process
(as a user runs them) or imported as modules (their functions)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


def run_script(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``benchmarks/<name>.py`` in a child process, from the repository's root."""
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def script_module(name: str) -> Any:
    """``benchmarks/<name>.py`` as a module (the scripts import each other by
    bare name, as their directory is on the path when they run)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))
