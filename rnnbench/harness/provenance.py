"""Where a number came from: versions, commit, host, processor, time."""

from __future__ import annotations

import datetime as _dt
import functools
import platform
import re
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

from rnnbench import __version__
from rnnbench.harness import allocator


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the rnnbench checkout, when it is one (else None)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def blas() -> str | None:
    """The BLAS torch was built with (``BLAS_INFO`` of ``torch.__config__.show()``), and
    its MKL-DNN version where there is one."""
    text = torch.__config__.show()
    match = re.search(r"BLAS_INFO=([^,\s]+)", text)
    dnn = re.search(r"MKL-DNN (v[\d.]+)", text)
    if match is None:
        return None
    return match.group(1) + (f", MKL-DNN {dnn.group(1)}" if dnn else "")


def gpu_name(device: str) -> str | None:
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return None


def provenance(device: str = "cpu") -> dict:
    """The provenance columns of a row."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": _version("ray"),
        "rnnbench": __version__,
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "gpu_name": gpu_name(device),
        "blas": blas(),
        "allocator": allocator.state(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def platform_summary() -> str:
    python = f"python {platform.python_version()} ({sys.platform})"
    return f"{cpu_model()}, {python}, torch {torch.__version__}"
