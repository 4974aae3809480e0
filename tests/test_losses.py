"""Loss and margin primitives against hand-computed values (METHODS.md §2, §7.1.7, §7.2)."""

import math

import pytest
import torch

from irat import losses

Z = torch.tensor


def test_kl_matches_manual_sum_and_is_zero_on_equal_inputs():
    g = torch.Generator().manual_seed(0)
    zp, zq = (
        torch.randn(6, 5, generator=g, dtype=torch.float64),
        torch.randn(6, 5, generator=g, dtype=torch.float64),
    )
    p, q = zp.softmax(1), zq.softmax(1)
    manual = (p * (p.log() - q.log())).sum(1)
    assert torch.allclose(losses.kl(zp, zq), manual, atol=1e-10)
    assert (losses.kl(zp, zq) >= 0).all()
    assert torch.allclose(losses.kl(zp, zp), torch.zeros(6, dtype=torch.float64), atol=1e-12)


def test_kl_hand_value():
    # p = softmax(1, 0), q = softmax(0, 1): KL = (p0 - p1)·1 = 0.46211716
    assert losses.kl(Z([[1.0, 0.0]]), Z([[0.0, 1.0]])).item() == pytest.approx(0.46211716, abs=1e-7)


@pytest.mark.parametrize(
    "logits,kappa,expected",
    [
        ((3.0, 1.0, 0.0), 0.0, -2.0),
        ((3.0, 1.0, 0.0), 50.0, -52.0),
        ((0.0, 5.0, 1.0), 50.0, -45.0),
        ((0.0, 5.0, 1.0), 0.0, 0.0),
    ],
)
def test_cw_reference_values(logits, kappa, expected):
    assert losses.cw(Z([logits]), Z([0]), kappa).item() == pytest.approx(expected)


def test_other_max_masks_the_true_class_even_when_it_is_the_largest():
    z = Z([[5.0, 1.0, 2.0], [0.0, 9.0, 3.0]])
    assert losses.other_max(z, Z([0, 1])).tolist() == [2.0, 3.0]
    assert losses.margin(z, Z([0, 1])).tolist() == [3.0, 6.0]


def test_pm_range_sign_and_two_class_symmetry():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(200, 4, generator=g) * 3
    y = torch.randint(0, 4, (200,), generator=g)
    pm = losses.pm(z, y)
    assert ((pm >= -1) & (pm <= 1)).all()
    assert torch.equal(pm > 0, z.argmax(1) == y)
    z2 = torch.randn(50, 2, generator=g)
    assert torch.allclose(
        losses.pm(z2, torch.zeros(50, dtype=torch.long)), -losses.pm(z2, torch.ones(50, dtype=torch.long))
    )


def test_mc_margin_properties():
    g = torch.Generator().manual_seed(2)
    p = torch.randn(30, 5, generator=g).softmax(1)
    y = torch.randint(0, 5, (30,), generator=g)
    d = losses.mc_margin(p, y)
    assert torch.equal(d.gather(1, y[:, None]).squeeze(1), torch.zeros(30))
    assert ((d >= -1) & (d <= 1)).all()
    others = d.masked_fill(torch.nn.functional.one_hot(y, 5).bool(), float("inf")).amin(1)
    assert torch.allclose(others, losses.margin(p, y))


def test_bce_hand_value_and_lower_bound():
    z, y = Z([[0.0, 1.0]]), Z([0])
    p0, p1 = 1 / (1 + math.e), math.e / (1 + math.e)
    expected = -math.log(p0) - math.log(1.0001 - p1 + 1e-12)
    assert losses.bce(z, y).item() == pytest.approx(expected, rel=1e-6)
    g = torch.Generator().manual_seed(3)
    zz, yy = torch.randn(100, 6, generator=g) * 4, torch.randint(0, 6, (100,), generator=g)
    assert (losses.bce(zz, yy) >= losses.ce(zz, yy) - 1e-4).all()


def test_soft_ce_with_one_hot_equals_ce():
    z, y = torch.randn(8, 3), torch.randint(0, 3, (8,))
    assert torch.allclose(
        losses.soft_ce(z, torch.nn.functional.one_hot(y, 3).float()), losses.ce(z, y), atol=1e-6
    )


def test_dlr_t_reference_value_and_invariances():
    """§7.1.8: logits (3, 1, 2, 0, −1), y = 0, t = 2 → −(3 − 2)/(3 − ½(1 + 0)) = −0.4."""
    z = torch.tensor([[3.0, 1.0, 2.0, 0.0, -1.0]], dtype=torch.float64)
    y, t = torch.tensor([0]), torch.tensor([2])
    assert losses.dlr_t(z, y, t).item() == pytest.approx(-0.4, abs=1e-12)
    assert losses.dlr_t(2.5 * z - 7.0, y, t).item() == pytest.approx(-0.4, abs=1e-12)  # a·z + b, a > 0
    # z_y = z_t gives 0; a target above y gives a positive loss (the attack's goal)
    assert losses.dlr_t(torch.tensor([[2.0, 1.0, 2.0, 0.0, -1.0]]), y, t).item() == 0.0
    assert losses.dlr_t(z, torch.tensor([4]), torch.tensor([0])).item() == pytest.approx(4 / 2.5)


def test_dlr_reference_values():
    """−(z_y − max_{j≠y} z_j)/(z_π1 − z_π3): (3, 1, 2, 0, −1) → y = 0: −1/2; y = 1: (3 − 1)/2 = 1."""
    z = torch.tensor([[3.0, 1.0, 2.0, 0.0, -1.0]] * 2, dtype=torch.float64)
    assert losses.dlr(z, torch.tensor([0, 1])).tolist() == pytest.approx([-0.5, 1.0])


def test_dlr_needs_enough_classes():
    with pytest.raises(ValueError, match="at least 4 classes"):
        losses.dlr_t(torch.zeros(1, 3), torch.tensor([0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="at least 3 classes"):
        losses.dlr(torch.zeros(1, 2), torch.tensor([0]))
