"""Objective formulas against hand-computed values and the spec's invariants (§4.1–4.4, §7.2,
§7.3.1, §7.3.4)."""

import math

import pytest
import torch
import torch.nn.functional as F

from irat.objectives import at, mart, natural, trades
from irat.types import SampleStats
from irat.weighting import with_burn_in

NAT, ADV, Y = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0])
CE_NAT = math.log(1 + math.exp(-1))  # −log softmax(1,0)_0
CE_ADV = math.log(1 + math.exp(1))  # −log softmax(0,1)_0
KL = (math.e - 1) / (math.e + 1)  # KL(softmax(1,0) ‖ softmax(0,1)) = p0 − p1


def ones(n=1):
    return torch.ones(n)


def test_natural_and_at_hand_values():
    assert natural(NAT, None, Y, ones())[0].item() == pytest.approx(CE_NAT, abs=1e-6)
    assert at(None, ADV, Y, ones())[0].item() == pytest.approx(CE_ADV, abs=1e-6)
    assert at(None, ADV, Y, torch.tensor([0.5]))[0].item() == pytest.approx(0.5 * CE_ADV, abs=1e-6)


def test_trades_hand_value_and_weight_on_kl_only():
    assert trades(NAT, ADV, Y, ones(), beta=6.0)[0].item() == pytest.approx(CE_NAT + 6 * KL, abs=1e-6)
    assert trades(NAT, ADV, Y, torch.tensor([0.0]), beta=6.0)[0].item() == pytest.approx(CE_NAT, abs=1e-6)


def test_trades_reduces_to_natural_ce_when_adv_equals_nat_and_grads_flow_into_both():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (5,), generator=g)
    loss, _ = trades(z, z.clone(), y, torch.ones(5, dtype=torch.float64))
    assert loss.item() == pytest.approx(F.cross_entropy(z, y).item(), abs=1e-12)
    zn = torch.randn(5, 4, generator=g, requires_grad=True)
    za = torch.randn(5, 4, generator=g, requires_grad=True)
    trades(zn, za, y, torch.ones(5))[0].backward()
    assert zn.grad.abs().sum() > 0 and za.grad.abs().sum() > 0


def test_mart_hand_value():
    p0_nat = math.exp(1) / (math.exp(1) + 1)
    p1_adv = math.exp(1) / (math.exp(1) + 1)
    bce = CE_ADV - math.log(1.0001 - p1_adv + 1e-12)
    expected = bce + 6 * KL * (1.0000001 - p0_nat)
    assert mart(NAT, ADV, Y, ones(), beta=6.0)[0].item() == pytest.approx(expected, abs=1e-5)
    # the weight multiplies the BCE only
    assert mart(NAT, ADV, Y, torch.tensor([0.0]), beta=6.0)[0].item() == pytest.approx(
        6 * KL * (1.0000001 - p0_nat), abs=1e-5
    )


def test_mart_regulariser_vanishes_when_natural_prediction_is_certain():
    nat = torch.tensor([[30.0, 0.0]])
    assert mart(nat, ADV, Y, torch.zeros(1))[0].item() == pytest.approx(0.0, abs=1e-6)


def _kl(zn, za):
    return (F.softmax(zn, 1) * (F.log_softmax(zn, 1) - F.log_softmax(za, 1))).sum(1)


UNWEIGHTED = {  # the base methods' losses, written out (§4.2–4.4)
    at: lambda zn, za, y: F.cross_entropy(za, y),
    trades: lambda zn, za, y: F.cross_entropy(zn, y) + 6.0 * _kl(zn, za).mean(),
    mart: lambda zn, za, y: (
        F.cross_entropy(za, y, reduction="none")
        - torch.log(1.0001 - F.softmax(za, 1).scatter(1, y[:, None], 0.0).amax(1) + 1e-12)
        + 6.0 * _kl(zn, za) * (1.0000001 - F.softmax(zn, 1).gather(1, y[:, None]).squeeze(1))
    ).mean(),
}


@pytest.mark.parametrize("objective", [at, trades, mart])
def test_burn_in_weights_give_the_unweighted_loss(objective):
    g = torch.Generator().manual_seed(4)
    zn, za = torch.randn(16, 10, generator=g), torch.randn(16, 10, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    stats = SampleStats(torch.arange(16), y, za, zn, None, epoch=2)
    weird = with_burn_in(lambda s: torch.rand(16, generator=g) * 5, burn_in=3)
    w = weird(stats)
    assert torch.equal(w, torch.ones(16))
    torch.testing.assert_close(objective(zn, za, y, w)[0], UNWEIGHTED[objective](zn, za, y))
    after = with_burn_in(lambda s: torch.full((16,), 2.0, requires_grad=True), burn_in=2)(stats)
    assert torch.equal(after, torch.full((16,), 2.0)) and not after.requires_grad
