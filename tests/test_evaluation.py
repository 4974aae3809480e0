"""``irat.evaluate`` on a small trained model: per-sample, per-class and worst-case bookkeeping,
the attacks it names (AutoAttack included, on a few dozen images), saved results, and the sanity
warnings on a model that masks its gradients."""

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import irat


def _toy(n, seed):
    """4 classes on 1×8×8 images: the class is the bright quadrant."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = 0.25 * torch.rand(n, 1, 8, 8, generator=g)
    for c in range(4):
        r, col = divmod(c, 2)
        x[y == c, :, 4 * r : 4 * r + 4, 4 * col : 4 * col + 4] += 0.7
    return SimpleNamespace(x=x, y=y)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    data = _toy(512, 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(150):
        loss = nn.functional.cross_entropy(model(data.x), data.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_per_sample_per_class_and_worst_case_are_consistent(trained, tmp_path):
    test = _toy(200, 1)
    attacks = ["clean", "fgsm", "pgd-10", "cw-10"]
    res = irat.evaluate(trained, test, attacks, eps=0.3, limit=120, progress=False, sanity=False)
    assert res.n == 120 and set(res.accuracy) == {*attacks, "worst-case"}
    with torch.inference_mode():
        clean = trained(test.x[:120]).argmax(1) == test.y[:120]
    assert torch.equal(res.per_sample["clean"], clean)
    assert res.accuracy["clean"] > 0.9  # the model has learnt the toy problem
    assert res.accuracy["pgd-10"] < res.accuracy["clean"] - 0.2  # and ε = 0.3 breaks it
    worst = torch.stack([res.per_sample[a] for a in attacks]).all(0)
    assert torch.equal(res.per_sample["worst-case"], worst)
    assert res.accuracy["worst-case"] == pytest.approx(worst.float().mean().item())
    assert res.accuracy["worst-case"] <= min(res.accuracy[a] for a in attacks)
    y = test.y[:120]
    for c in range(4):
        expect = res.per_sample["pgd-10"][y == c].float().mean().item()
        assert res.per_class["pgd-10"][c] == pytest.approx(expect)
    res.save(tmp_path)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["n"] == 120 and saved["accuracy"]["fgsm"] == pytest.approx(res.accuracy["fgsm"])
    assert "on 120 test images" in (tmp_path / "eval.md").read_text()


def test_step_size_reaches_the_pgd_attacks(trained):
    test = _toy(200, 5)
    default = irat.evaluate(trained, test, ["pgd-10"], eps=0.3, progress=False, sanity=False)
    frozen = irat.evaluate(trained, test, ["pgd-10"], eps=0.3, step_size=0.0, progress=False, sanity=False)
    # step 0: only the random start remains, which barely hurts a model that PGD breaks
    assert frozen.accuracy["pgd-10"] > default.accuracy["pgd-10"] + 0.2


def test_autoattack_through_evaluate_is_at_least_as_strong_as_pgd(trained):
    test = _toy(64, 2)
    res = irat.evaluate(
        trained, test, ["clean", "pgd-10", "autoattack"], eps=0.3, limit=32, progress=False, sanity=False
    )
    assert res.n == 32
    assert res.accuracy["autoattack"] <= res.accuracy["pgd-10"] + 1 / 32
    assert res.accuracy["autoattack"] < res.accuracy["clean"]


class _Masked(nn.Module):
    """Gradient masking by construction: the input is quantised to 2 levels before the network,
    so input gradients are zero and PGD never moves."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        q = (x > 0.5).float()
        return self.net(q + 0 * x)


def test_sanity_checks_warn_on_a_gradient_masking_model(trained, capsys):
    test = _toy(100, 3)
    masked = _Masked(trained)
    res = irat.evaluate(masked, test, ["clean", "pgd-10"], eps=0.1, progress=False)
    assert any("does not fall" in w for w in res.warnings)
    assert "WARNING (irat.evaluate)" in capsys.readouterr().err
    # the same model without the quantisation passes the checks
    assert irat.evaluate(trained, test, ["clean", "pgd-10"], eps=0.1, progress=False).warnings == []


def test_bad_arguments_fail_clearly(trained):
    test = _toy(10, 4)
    with pytest.raises(ValueError, match="eps"):
        irat.evaluate(trained, test, ["clean"], eps=-1, progress=False)
    with pytest.raises(ValueError, match="unknown"):
        irat.evaluate(trained, test, ["pgd-ten"], eps=0.1, progress=False)


def test_evaluation_halves_the_batch_on_out_of_memory_and_loses_nothing():
    from irat.evaluation.robust import correct_under
    from irat.types import AttackResult

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(70, 1, 2, 2), torch.randint(0, 3, (70,))
    tried = []

    def attack(m, xb, yb):  # a device that fits at most 20 images
        tried.append(len(yb))
        if len(yb) > 20:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return AttackResult(x_adv=xb, logits_adv=m(xb))

    got = correct_under(model, x, y, attack, batch_size=None)  # CPU default: min(n, 500) = 70
    with torch.no_grad():
        expected = model(x).argmax(1) == y
    assert torch.equal(got, expected)
    assert tried[:3] == [70, 35, 17] and set(tried[3:]) <= {17, 2}  # 70 → 35 → 17, then it stays
    assert sum(t for t in tried if t <= 20) == 70


def test_evaluation_gives_up_on_out_of_memory_at_batch_one():
    from irat.evaluation.robust import correct_under

    def attack(m, xb, yb):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(torch.OutOfMemoryError):
        correct_under(nn.Linear(1, 1), torch.rand(3, 1), torch.zeros(3).long(), attack, batch_size=2)


def test_default_evaluation_batch_is_500_on_cpu_and_the_split_on_gpu():
    from irat.evaluation.robust import default_batch_size

    assert default_batch_size(torch.device("cpu"), 10_000) == 500
    assert default_batch_size(torch.device("cpu"), 40) == 40
    assert default_batch_size(torch.device("cuda"), 10_000) == 10_000


def test_a_point_misclassified_when_clean_is_non_robust_under_every_attack(trained):
    """§5.1: an attack whose output happens to be classified correctly does not make a naturally
    misclassified point robust (a random start or CW's clamped loss can land there)."""
    from irat.evaluation.robust import correct_under
    from irat.types import AttackResult

    test = _toy(200, 6)
    x, y = test.x.clone(), test.y
    x[:30] = x[:30].roll(1, dims=-1).flip(-1)  # some points the model gets wrong
    with torch.inference_mode():
        clean = trained(x).argmax(1) == y
    assert 0 < (~clean).sum() < 100

    def oracle(model, xb, yb):  # an "attack" whose output is always classified correctly
        return AttackResult(x_adv=xb, logits_adv=torch.nn.functional.one_hot(yb, 4).float())

    assert torch.equal(correct_under(trained, x, y, oracle), clean)
    given = correct_under(trained, x, y, oracle, clean_correct=torch.ones_like(clean))
    assert given.all()  # the given clean correctness is the one used
    res = irat.evaluate(trained, SimpleNamespace(x=x, y=y), ["pgd-10", "cw-10"], eps=0.0, progress=False)
    for name in ("pgd-10", "cw-10"):  # ε = 0: every attack returns x, so it equals clean accuracy
        assert torch.equal(res.per_sample[name], clean)


def test_one_call_runs_each_attack_with_its_own_step_and_image_count(trained, tmp_path):
    test = _toy(300, 7)
    attacks = ["clean", "pgd-10:eps/4", "pgd-30:0.01", "cw-10@50", "fgsm@120"]
    res = irat.evaluate(trained, test, attacks, eps=0.3, progress=False, sanity=False)
    assert res.n == 300 and res.images == {
        "clean": 300,
        "pgd-10:eps/4": 300,
        "pgd-30:0.01": 300,
        "cw-10@50": 50,
        "fgsm@120": 120,
        "worst-case": 50,
    }
    assert len(res.per_sample["cw-10@50"]) == 50 and len(res.per_sample["worst-case"]) == 50
    # the step in the name is the one used: the same attack built with it gives the same points
    from irat.attacks import build
    from irat.evaluation.robust import correct_under

    for name, step in (("pgd-10:eps/4", 0.075), ("pgd-30:0.01", 0.01)):
        torch.manual_seed(0)
        expect = correct_under(trained, test.x, test.y, build(name.split(":")[0], eps=0.3, step_size=step))
        assert torch.equal(res.per_sample[name], expect)
    # a smaller step over as many iterations as PGD-10 reaches less far: weaker here
    assert res.accuracy["pgd-30:0.01"] > res.accuracy["pgd-10:eps/4"]
    # the worst case is over the images every attack ran on
    worst = torch.stack([res.per_sample[a][:50] for a in attacks]).all(0)
    assert torch.equal(res.per_sample["worst-case"], worst)
    limited = irat.evaluate(trained, test, ["cw-10"], eps=0.3, limit=50, progress=False, sanity=False)
    assert res.accuracy["cw-10@50"] == limited.accuracy["cw-10"]
    res.save(tmp_path)
    assert json.loads((tmp_path / "eval.json").read_text())["images"]["cw-10@50"] == 50
    title = (tmp_path / "eval.md").read_text().splitlines()[0]
    assert (
        title == "Accuracy (%) on 300 test images; cw-10@50: the first 50; fgsm@120: the first 120; "
        "worst-case: the first 50, linf eps=0.3"
    )
    with pytest.raises(ValueError, match="positive integer"):
        irat.evaluate(trained, test, ["pgd-10@0"], eps=0.3, progress=False)


def test_lm_pgd_and_spsa_by_name_through_evaluate(trained):
    """The own LM-PGD and SPSA run by name in ``irat.evaluate``, lower the accuracy, and give the
    same numbers for the same seed (SPSA draws from the seeded global generator)."""
    test = _toy(64, 3)
    attacks = ["clean", "pgd-10", "lm-pgd-20:0.75*eps", "spsa"]
    runs = [
        irat.evaluate(trained, test, attacks, eps=0.3, limit=40, progress=False, sanity=False, seed=s)
        for s in (0, 0)
    ]
    acc = runs[0].accuracy
    assert acc["lm-pgd-20:0.75*eps"] < acc["clean"] - 0.2
    assert acc["spsa"] < acc["clean"] - 0.2
    assert torch.equal(runs[0].per_sample["spsa"], runs[1].per_sample["spsa"])
