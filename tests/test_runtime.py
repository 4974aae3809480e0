"""irat.runtime: freed memory is kept for reuse, so an attack's buffers stop page-faulting."""

import os
import subprocess
import sys
import textwrap

import pytest

from irat import runtime

glibc = pytest.mark.skipif(runtime._glibc_mallopt() is None, reason="mallopt is glibc-only")

FAULTS = textwrap.dedent(
    """
    import resource, sys, torch
    import irat
    from irat.attacks.pgd import pgd
    from irat.runtime import keep_freed_memory

    torch.manual_seed(0)
    model = irat.models.create("tiny-cnn", dataset=irat.data.registry.get("fashion-mnist").spec)
    x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))

    def faults_per_attack():
        pgd(model, x, y, eps=0.1, steps=3, step_size=0.025)  # warm-up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            pgd(model, x, y, eps=0.1, steps=3, step_size=0.025)
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5

    default = faults_per_attack()
    applied = keep_freed_memory()
    print(default, faults_per_attack(), applied)
    """
)


def _run(env_value: str | None) -> tuple[float, float, bool]:
    env = dict(os.environ)
    env.pop(runtime.ENV, None)
    if env_value is not None:
        env[runtime.ENV] = env_value
    for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"):
        env.pop(key, None)
    out = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, check=True)
    default, kept, applied = out.stdout.split()
    return float(default), float(kept), applied == "True"


@glibc
def test_attack_runs_without_page_faults_once_applied():
    default, kept, applied = _run(None)
    assert applied
    # glibc's default returns the attack's buffers to the OS: thousands of faults per attack
    # (about 3300 for this PGD-3 here); kept buffers fault at most a few times
    assert kept < 100, (default, kept)


@glibc
def test_opt_out_leaves_the_allocator_alone():
    default, kept, applied = _run("0")
    assert not applied
    assert kept > 10 * max(1.0, _run(None)[1])  # still faulting: nothing was changed
