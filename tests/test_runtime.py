"""irat.runtime: which allocator settings ``keep_freed_memory`` asks glibc for, and when it leaves
the allocator alone. The effect on page faults depends on the machine's load and is measured by
``benchmarks/page_faults.py``, not here."""

import subprocess
import sys

import pytest
import torch

from irat import runtime


class Recorder:
    """Stands in for glibc's ``mallopt``: records the calls, answers ``result``."""

    def __init__(self, result: int = 1):
        self.calls, self.result = [], result

    def __call__(self, option: int, value: int) -> int:
        self.calls.append((option, value))
        return self.result


@pytest.fixture
def mallopt(monkeypatch):
    runtime.keep_freed_memory.cache_clear()
    rec = Recorder()
    monkeypatch.setattr(runtime, "_glibc_mallopt", lambda: rec)
    monkeypatch.delenv(runtime.ENV, raising=False)
    yield rec
    runtime.keep_freed_memory.cache_clear()


def test_it_raises_glibcs_mmap_and_trim_thresholds(mallopt):
    assert runtime.keep_freed_memory() is True
    assert sorted(mallopt.calls) == sorted([(-3, 32 * 2**20), (-1, 2**30)])  # M_MMAP_, M_TRIM_THRESHOLD


def test_it_runs_once_per_process(mallopt):
    runtime.keep_freed_memory()
    runtime.keep_freed_memory()
    assert len(mallopt.calls) == 2


@pytest.mark.parametrize("value", ["0", "false", "No", " off "])
def test_opt_out_leaves_the_allocator_alone(mallopt, monkeypatch, value):
    monkeypatch.setenv(runtime.ENV, value)
    assert runtime.keep_freed_memory() is False
    assert mallopt.calls == []


def test_a_refused_setting_is_reported(mallopt):
    mallopt.result = 0  # glibc answers 0 when it rejects a value
    assert runtime.keep_freed_memory() is False


def test_without_glibc_it_does_nothing(monkeypatch):
    runtime.keep_freed_memory.cache_clear()
    monkeypatch.setattr(runtime, "_glibc_mallopt", lambda: None)
    monkeypatch.delenv(runtime.ENV, raising=False)
    assert runtime.keep_freed_memory() is False
    runtime.keep_freed_memory.cache_clear()


@pytest.mark.skipif(runtime._glibc_mallopt() is None, reason="mallopt is glibc-only")
def test_real_glibc_accepts_both_settings():
    # in a fresh process, so that this test's process keeps its allocator as it was
    code = "from irat.runtime import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_pick_device():
    assert runtime.pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.pick_device("auto").type == expected
