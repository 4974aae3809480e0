"""``irat.evaluate``: accuracy of a model under a list of attacks, per sample, per class and in the
worst case over attacks, with the sanity checks that catch gradient masking (METHODS.md §5.1).

* A point misclassified when clean counts as non-robust under every attack.
* Each attack name may carry its step size (``pgd-100:1/255``, ``cw-20:eps/4``) and its own image
  count after ``@`` (``autoattack@1000``: the first 1000 images; the others run on all), so one
  call evaluates the papers' protocols (MAIL: AutoAttack on the first 1000, PGD on all). The worst
  case and the sanity checks use the images every attack ran on.

Every table states the number of images it was computed on (``EvalResult.n``, ``images``).
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from irat import attacks as attack_lib
from irat import distributed
from irat.attacks.build import clean
from irat.attacks.fmn import batched_norms, fmn, summarize
from irat.evaluation import masking
from irat.evaluation.progress import Progress, progress_keys
from irat.evaluation.robust import correct_under
from irat.evaluation.sanity import check_accuracies
from irat.models.preprocess import bpda as bpda_mode
from irat.runtime import keep_freed_memory


@dataclass
class EvalResult:
    """Accuracies as fractions.

    ``accuracy``: attack name → accuracy, plus ``worst-case`` (a point counts only if it
    survives every attack, clean included). ``per_sample``: name → bool [its images] (CPU).
    ``per_class``: name → list of per-class accuracies. ``eps_sweep``: ε → PGD-20 accuracy.
    ``masking``: what the gradient-masking probes measured (``irat.evaluation.masking``);
    ``bpda``: the attacks ran with BPDA (``irat.models.bpda``).
    ``n``: the images evaluated; ``images``: name → the first how many of them it ran on (all
    ``n`` unless the name says ``@N``; ``worst-case``: the fewest). ``minimal_norms``: for each
    ``fmn-K`` name, the distribution of the minimal norms FMN found on its images
    (``irat.attacks.fmn.summarize``: share found, quantiles, mean, share robust at ε).
    """

    accuracy: dict[str, float]
    per_sample: dict[str, Tensor]
    per_class: dict[str, list[float]]
    n: int
    eps: float
    norm: str
    class_names: list[str] = field(default_factory=list)
    eps_sweep: dict[float, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    images: dict[str, int] = field(default_factory=dict)
    masking: dict = field(default_factory=dict)
    bpda: bool = False
    minimal_norms: dict[str, dict[str, float]] = field(default_factory=dict)

    def title(self) -> str:
        """ "Accuracy (%) on N test images, …", naming the attacks that ran on fewer."""
        fewer = {k: v for k, v in self.images.items() if v != self.n}
        where = "".join(f"; {k}: the first {v}" for k, v in fewer.items())
        bpda = ", attacks with BPDA" if self.bpda else ""
        return f"Accuracy (%) on {self.n} test images{where}, {self.norm} eps={self.eps:g}{bpda}"

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "images": self.images,
            "eps": self.eps,
            "norm": self.norm,
            "accuracy": self.accuracy,
            "per_class": self.per_class,
            "class_names": self.class_names,
            "eps_sweep": {str(k): v for k, v in self.eps_sweep.items()},
            "warnings": self.warnings,
            "masking": self.masking,
            "bpda": self.bpda,
            "minimal_norms": self.minimal_norms,
        }

    def to_markdown(self) -> str:
        names = list(self.accuracy)
        lines = [
            self.title(),
            "",
            "| " + " | ".join(names) + " |",
            "|" + "---|" * len(names),
            "| " + " | ".join(f"{100 * self.accuracy[k]:.2f}" for k in names) + " |",
        ]
        if self.per_class and self.class_names:
            attacks = list(self.per_class)
            lines += ["", "Per-class accuracy (%)", "", "| class | " + " | ".join(attacks) + " |"]
            lines.append("|---|" + "---|" * len(attacks))
            for c, cname in enumerate(self.class_names):
                cells = " | ".join(f"{100 * self.per_class[a][c]:.1f}" for a in attacks)
                lines.append(f"| {cname} | {cells} |")
        for name, d in self.minimal_norms.items():
            lines += ["", f"{name}: minimal {self.norm} norms on {int(d['n'])} images (inf: none found)", ""]
            keys = ["found", "q10", "q25", "q50", "q75", "q90", "mean_found", "robust"]
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            shares = ("found", "robust")
            lines.append(
                "| "
                + " | ".join(f"{100 * d[k]:.1f} %" if k in shares else f"{d[k]:.4f}" for k in keys)
                + " |"
            )
        if self.warnings:
            lines += ["", "**Sanity warnings**", ""] + [f"- {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"

    def save(self, directory: str | Path, stem: str = "eval") -> None:
        """Write ``<stem>.json`` and ``<stem>.md`` (per-sample correctness in ``<stem>.pt``)."""
        from irat.training.checkpoint import atomic_write_bytes, atomic_write_text

        directory = Path(directory)
        atomic_write_text(directory / f"{stem}.json", json.dumps(self.to_dict(), indent=2) + "\n")
        atomic_write_text(directory / f"{stem}.md", self.to_markdown())
        import io

        buf = io.BytesIO()
        torch.save({k: v.cpu() for k, v in self.per_sample.items()}, buf)
        atomic_write_bytes(directory / f"{stem}_per_sample.pt", buf.getvalue())


def split_images(name: str) -> tuple[str, int | None]:
    """``"autoattack@1000"`` → ``("autoattack", 1000)``; ``"pgd-20"`` → ``("pgd-20", None)``.
    ``ValueError`` when the count after ``@`` is not a positive integer."""
    attack, sep, count = name.partition("@")
    if not sep:
        return name, None
    if not count.strip().isdigit() or int(count) < 1:
        raise ValueError(
            f"{name!r}: the image count after '@' must be a positive integer (e.g. autoattack@1000)"
        )
    return attack, int(count)


def evaluate(
    model: torch.nn.Module,
    split,
    attacks: list[str] = ("clean", "pgd-20", "cw-20", "autoattack"),
    *,
    eps: float = 0.1,
    norm: str = "linf",
    limit: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
    sanity: bool = True,
    spec=None,
    step_size: float | None = None,
    bpda: bool = False,
    resume_dir: str | Path | None = None,
    keep_progress: bool = False,
) -> EvalResult:
    """Evaluate ``model`` on ``split`` (anything with ``.x`` [N, C, H, W] in [0, 1] and ``.y``).

    ``attacks``: names understood by ``irat.attacks.build`` ("clean", "fgsm", "pgd-20",
    "pgd-100:1/255", "cw-20", "autoattack", "apgd-ce", ...), each optionally with ``@N`` to run
    it on the first N images only (``autoattack@1000``). ``limit``: the first N images for every
    attack. Attacks are seeded with ``seed``. ``sanity``: run the checks of
    ``irat.evaluation.sanity`` and the gradient-masking probes of ``irat.evaluation.masking`` (ε
    sweep, input gradients, randomness, a Square probe) and print warnings to stderr. ``bpda``:
    every attack and probe sees through the model's declared ``irat.models.Preprocessing`` with
    the identity backward (``ValueError`` if it declares none). ``resume_dir``: a folder where
    each attack keeps its progress after every finished batch, so that a killed evaluation
    started again goes on from there (``irat.evaluation.progress``); the files are deleted when
    the evaluation is complete, unless ``keep_progress`` (``irat bench``: a later evaluation of
    the same weights and images reads a finished attack back instead of running it again);
    under torchrun each process keeps a file of its own shard, which a restart with the same
    number of processes picks up (another number starts the attacks over). ``spec``: the
    ``DatasetSpec``, for class names. ``step_size``: the step of PGD-k and CW-k whose name gives
    none (default ε/4); restarts are part of the name (``pgd-20x5``).
    """
    if eps < 0:
        raise ValueError(f"eps={eps} must be >= 0")
    if not attacks:
        raise ValueError("attacks is empty; name at least one, e.g. ['clean', 'pgd-20']")
    with bpda_mode(model, enabled=bpda):  # the attacks see through declared preprocessing
        device = next(model.parameters()).device
        if device.type == "cpu":
            keep_freed_memory()
        x, y = split.x[:limit].to(device), split.y[:limit].to(device)
        n = len(y)
        if n == 0:
            raise ValueError("the split to evaluate is empty")
        was_training = model.training
        with torch.inference_mode():
            n_cls = model.eval()(x[:1]).shape[1]
        model.train(was_training)
        built, images = {}, {}
        for name in attacks:
            attack, count = split_images(name)
            built[name] = attack_lib.build(attack, eps=eps, norm=norm, step_size=step_size)
            images[name] = min(count or n, n)

        # under torchrun each process attacks its shard of the images (AutoAttack too) and the
        # per-sample results are gathered, so every process holds them all (rank 0 writes)
        rows = distributed.shard(n)
        local_clean = correct_under(model, x[rows], y[rows], clean, batch_size=batch_size)
        clean_ok = distributed.gather_rows(local_clean, n)
        keys = {}  # attack name → its progress file, when resumable
        if resume_dir is not None:
            settings = dict(eps=eps, norm=norm, seed=seed, step_size=step_size, bpda=bpda)
            if distributed.world_size() > 1:  # torchrun: a file per process and shard
                settings["shard"] = (distributed.rank(), distributed.world_size())
            keys = progress_keys(model, x, y, images, **settings)
        per_sample: dict[str, Tensor] = {}
        for name, attack in built.items():
            k = images[name]
            mine = distributed.shard(k)
            torch.manual_seed(seed)
            local = correct_under(
                model,
                x[:k][mine],
                y[:k][mine],
                attack,
                clean_correct=clean_ok[:k][mine],
                batch_size=batch_size,
                progress=progress and distributed.is_main(),
                desc=name,
                resume=Progress(resume_dir, keys[name]) if name in keys else None,
            )
            per_sample[name] = distributed.gather_rows(local, k).cpu()
        minimal = {}  # FMN also finds each point's minimal norm: their distribution (one more FMN run)
        for name, a in built.items():
            if isinstance(a, functools.partial) and a.func is fmn:
                k, mine = images[name], distributed.shard(images[name])
                steps = a.keywords["steps"]
                local = batched_norms(
                    model, x[:k][mine], y[:k][mine], steps=steps, norm=norm, batch_size=batch_size
                )
                minimal[name] = summarize(distributed.gather_rows(local.to(x.device), k), eps=eps)
        m = min(images.values())  # the images every attack ran on
        worst = torch.stack([c[:m] for c in per_sample.values()]).all(0)
        accuracy = {name: c.float().mean().item() for name, c in per_sample.items()}
        accuracy["worst-case"] = worst.float().mean().item()
        images["worst-case"] = m
        y_cpu = y.cpu()
        per_class = {name: _per_class(c, y_cpu[: len(c)], n_cls) for name, c in per_sample.items()}

        warnings, probe = [], masking.Probe()
        if sanity:
            common = {split_images(name)[0]: c[:m].float().mean().item() for name, c in per_sample.items()}
            warnings += check_accuracies(common, m)
            if eps > 0:
                probe = masking.probe(
                    model, x, y, clean_ok, per_sample, eps=eps, norm=norm, seed=seed, batch_size=batch_size
                )
                warnings += probe.warnings
            for w in warnings if distributed.is_main() else ():
                print(f"WARNING (irat.evaluate): {w}", file=sys.stderr)
        for key in keys.values() if not keep_progress else ():  # complete: nothing left to resume
            Progress(resume_dir, key).clear()
        return EvalResult(
            accuracy=accuracy,
            per_sample={**per_sample, "worst-case": worst},
            per_class=per_class,
            n=n,
            eps=eps,
            norm=norm,
            class_names=list(spec.class_names) if spec is not None else [str(c) for c in range(n_cls)],
            eps_sweep=probe.eps_sweep,
            warnings=warnings,
            images=images,
            masking=probe.details,
            bpda=bpda,
            minimal_norms=minimal,
        )


def _per_class(correct: Tensor, y: Tensor, n_cls: int) -> list[float]:
    """Accuracy per class (NaN for a class absent from the split)."""
    total = torch.bincount(y, minlength=n_cls).float()
    hits = torch.bincount(y[correct], minlength=n_cls).float()
    return (hits / total).tolist()
