"""Where numbers came from: the exact command, the package versions and the hardware, as a dict
that reports print."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed, with ``python -m irat`` or the script path shown as ``irat``."""
    argv = list(sys.argv if argv is None else argv)
    if argv and (Path(argv[0]).name in ("irat", "__main__.py") or argv[0].endswith("irat/__main__.py")):
        argv[0] = "irat"
    return shlex.join(argv)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict:
    """CPU model and count, torch's thread count, the GPU (name, memory) when there is one."""
    import torch

    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
        info["gpu_count"] = torch.cuda.device_count()
    else:
        info["gpu"] = "none"
    return info


def versions() -> dict:
    import numpy
    import torch

    import irat

    out = {"irat": str(irat.__version__), "torch": str(torch.__version__), "numpy": str(numpy.__version__)}
    out["python"] = sys.version.split()[0]
    try:
        from importlib.metadata import version

        out["pyautoattack"] = version("pyautoattack")
    except Exception:
        pass
    return out


def provenance(command: str | None = None) -> dict:
    """{command, date (UTC), versions, hardware}."""
    return {
        "command": command if command is not None else command_line(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": versions(),
        "hardware": hardware(),
    }
