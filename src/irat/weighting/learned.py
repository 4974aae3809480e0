"""BiLAW's learned weighting: the one stateful weighting scheme (METHODS.md §4.11).

Where the other schemes are a formula of per-sample statistics, BiLAW's weights come from a small
network ω_μ (``weight_net.WeightNet``) on the multi-class margin Δ, and μ is trained so that a
pseudo SGD step of the classifier on the weighted loss lowers the robust loss on a held-out batch
(``meta.py``). In ``irat.training.step.train_step`` it is one extra call between the statistics
and the weights:

    stats = SampleStats(...)                        Δ from stats.logits_nat (θ_t, detached)
    meta_step(model, batch, adv, logits, stats, lr) 1. θ̃ = θ − lr_θ·∇_θ L_tr(θ, w(μ))
                                                    2. x̂' = attack(f_θ̃, x̂); μ ← SGD step on ∇_μ L_val(θ̃)
    w = weights(stats)                              3. w = ω_{μ_{t+1}}(Δ) normalised, detached
    objective(..., w) → backward → θ step              (the classifier's own optimizer)

The pseudo step's gradient reuses the training forward's graph (the logits the real update
backpropagates through); on top of the base method BiLAW costs that gradient, one validation
attack, one validation forward and backward, and one forward-mode pass of the training forward
(``meta.weight_gradient``: exact, no second-order graph). ``L_tr`` is the step's own
objective with the weights in the objective's place (``w·ce`` for AT, ``w·KL`` for TRADES,
``w·bce`` for MART), and ``L_val`` is the unweighted robust cross-entropy on a batch of the held-out
meta split ``D_meta`` (DECISION #18), attacked by the training attack against θ̃ (or against θ_t
with ``attack_on="current"``).

The non-parametric variant (``parametric=False``, DECISION #20) takes the pseudo step at uniform
weights ε_j = 1/B and uses ``w̃_j = max(−∂L_val(θ̃)/∂ε_j, 0)``, normalised (uniform when all 0).

State (``state_dict``): the weight network, its optimizer (SGD, lr 1e-3, momentum 0.9, weight decay
1e-4: Meta-Weight-Net's settings, DECISION #17) and the number of meta steps taken, which fixes
the next batch of ``D_meta`` (seeded order per pass), so a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from irat.data.loader import Loader
from irat.data.split import Split
from irat.distributed import all_reduce_, average_grads, global_draws, shard, share, world_size
from irat.types import Attack, AttackResult, Batch, Objective, SampleStats
from irat.weighting.meta import AtParameters, functional_forward, validation_loss, weight_gradient
from irat.weighting.normalize import normalize_to_batch
from irat.weighting.weight_net import INPUTS, WeightNet, input_size, needs_natural, weight_inputs

ATTACK_ON = ("pseudo", "current")


class LearnedWeighting:
    """BiLAW's weighting with its state.

    ``meta``: the held-out split D_meta (on the training device); ``num_classes``: n.
    ``parametric``: BiLAW (a weight network) or its non-parametric variant. Weight network:
    ``input`` ∈ ``weight_net.INPUTS`` [mc-margin], ``margin_on`` ∈ {nat, adv} [nat], ``hidden``
    widths [(128,)], its SGD ``lr`` [1e-3], ``momentum`` [0.9], ``weight_decay`` [1e-4].
    ``batch_size``: validation images per meta step [128]. ``attack_on``: the validation attack
    targets θ̃ (``pseudo``, the spec) or θ_t (``current``). ``seed``: the weight network's
    initialisation and the order of D_meta."""

    def __init__(
        self,
        meta: Split,
        num_classes: int,
        *,
        parametric: bool = True,
        input: str = "mc-margin",
        margin_on: str = "nat",
        hidden: Sequence[int] = (128,),
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        attack_on: str = "pseudo",
        seed: int = 0,
    ):
        if input not in INPUTS:
            raise ValueError(f"BiLAW input {input!r} is not one of {', '.join(INPUTS)}")
        if margin_on not in ("nat", "adv"):
            raise ValueError(f"BiLAW margin_on={margin_on!r}; choose nat or adv")
        if attack_on not in ATTACK_ON:
            raise ValueError(f"BiLAW attack_on={attack_on!r}; choose one of {', '.join(ATTACK_ON)}")
        if len(meta) == 0:
            raise ValueError("BiLAW needs a non-empty meta split (D_meta) to learn its weights from")
        if not (lr > 0 and 0 <= momentum < 1 and weight_decay >= 0):
            raise ValueError(
                f"BiLAW optimizer: need lr > 0, 0 <= momentum < 1, weight_decay >= 0; got "
                f"{lr}, {momentum}, {weight_decay}"
            )
        self.meta = meta
        self.parametric = bool(parametric)
        self.input, self.margin_on, self.attack_on = input, margin_on, attack_on
        self.loader = Loader(meta, batch_size=batch_size, shuffle=True, seed=seed)
        self.net: WeightNet | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        if self.parametric:
            with torch.random.fork_rng(devices=[]):  # seeded; the global CPU stream is not consumed
                torch.random.default_generator.manual_seed(seed)
                self.net = WeightNet(input_size(input, num_classes), hidden)
            self.optimizer = torch.optim.SGD(
                self.net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
            )
        self.steps = 0  # meta steps taken: the position in D_meta's seeded order
        self._batches: Iterator[Batch] | None = None
        self._w: Tensor | None = None  # the non-parametric weights of the current step
        self._val_loss: Tensor | None = None  # Σ L_val over the meta steps since pop_metrics
        self._count = 0

    # ---------------------------------------------------------------------------------------------
    # what the training step calls

    def needs(self) -> set[str]:
        """{"nat"} when the weight network reads the natural logits (``weighting.needs``)."""
        return {"nat"} if self.parametric and needs_natural(self.input, self.margin_on) else set()

    def features(self, stats: SampleStats) -> Tensor:
        """The weight network's input [B, d] from the step's statistics (detached)."""
        return weight_inputs(self.input, stats.y, stats.logits_adv, stats.logits_nat, self.margin_on)

    def weights(self, stats: SampleStats) -> Tensor:
        """Step 3's weights [B], mean one (``normalize_to_batch``), detached: ω_μ on this step's
        input after the meta step, or the non-parametric weights of this step's meta step."""
        if self.net is None:
            if self._w is None or self._w.shape != stats.y.shape:
                raise RuntimeError("the non-parametric BiLAW weights come from meta_step; call it first")
            return self._w
        with torch.no_grad():
            return normalize_to_batch(self.net(self.features(stats)))

    def meta_step(
        self,
        model: nn.Module,
        batch: Batch,
        adv: AttackResult | None,
        logits_nat: Tensor | None,
        logits_adv: Tensor | None,
        stats: SampleStats,
        lr_theta: float,
        *,
        attack: Attack | None,
        objective: Objective,
    ) -> None:
        """Steps 1 and 2 of §4.11 on one batch of D_meta: the pseudo update of θ on
        ``objective(logits_nat, logits_adv, y, w)`` (the step's logits of ``batch.x`` and of
        ``adv.x_adv``, with their graph, or None where the step has none), the validation batch
        attacked by ``attack`` at θ̃, and one SGD step of μ (or the non-parametric weights). θ,
        its ``.grad`` and the BatchNorm buffers are not changed."""
        x_val, y_val = self._next_batch()
        m = len(y_val)  # under torchrun each process attacks and differentiates its shard of it
        if world_size() > 1 and m >= world_size():
            rows = shard(m)
            x_val, y_val = x_val[rows], y_val[rows]
        val_share = share(len(y_val), m)
        x_val = x_val.to(stats.logits_adv.dtype)
        if self.net is not None:
            w_mu = normalize_to_batch(self.net(self.features(stats)), keep_graph=True)
        else:
            w_mu = torch.ones_like(stats.y, dtype=stats.logits_adv.dtype)
        w = w_mu.detach().requires_grad_(True)  # the mean-one weights; ∂F/∂w chains into μ below

        def train_loss_at(params: dict[str, Tensor]) -> Tensor:
            z_nat = functional_forward(model, params, batch.x) if logits_nat is not None else None
            z_adv = functional_forward(model, params, adv.x_adv) if logits_adv is not None else None
            return objective(z_nat, z_adv, stats.y, w)[0]

        def validation(theta: dict[str, Tensor]) -> Tensor:
            target = AtParameters(model, theta) if self.attack_on == "pseudo" else model
            with global_draws(m):  # random starts of the whole validation batch, this shard's rows
                x_val_adv = attack(target, x_val, y_val).x_adv if attack is not None else x_val
            loss = validation_loss(model, theta, x_val_adv, y_val)
            shared = loss.detach() * val_share  # its mean over the processes: the batch's L_val
            self._val_loss = shared if self._val_loss is None else self._val_loss + shared
            self._count += 1
            return loss

        train_loss, _ = objective(logits_nat, logits_adv, stats.y, w)
        g = weight_gradient(
            model,
            w,
            train_loss,
            train_loss_at,
            lr_theta,
            validation,
            share(len(batch), batch.total),
            val_share,
        )
        if self.net is None:
            self._w = normalize_to_batch((-g).clamp(min=0))
        else:
            params = list(self.net.parameters())
            for p, grad in zip(params, torch.autograd.grad(w_mu, params, grad_outputs=g)):
                p.grad = grad
            average_grads(params)  # torchrun: the global meta-gradient, the same μ on every process
            self.optimizer.step()
        self.steps += 1

    # ---------------------------------------------------------------------------------------------
    # state

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """Move the weight network (and D_meta, to ``device``); returns self."""
        if self.net is not None:
            self.net.to(device=device, dtype=dtype)
        if device is not None:
            self.meta = self.meta.to(device)
            self.loader.split = self.meta
            self._batches = None
        return self

    def state_dict(self) -> dict:
        """The weight network, its optimizer and the number of meta steps (a checkpoint's
        ``weighting`` entry)."""
        state: dict = {"steps": self.steps}
        if self.net is not None:
            state["net"] = self.net.state_dict()
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        if self.net is not None:
            self.net.load_state_dict(state["net"])
            self.optimizer.load_state_dict(state["optimizer"])
        self._batches = None

    def pop_metrics(self) -> dict[str, float]:
        """``meta_val_loss``: the mean validation loss at θ̃ since the last call (one read-back)."""
        if self._val_loss is None:
            return {}
        total = all_reduce_(self._val_loss.reshape(1), "mean")  # torchrun: over the shards
        row = {"meta_val_loss": total.item() / self._count}
        self._val_loss, self._count = None, 0
        return row

    def _next_batch(self) -> tuple[Tensor, Tensor]:
        """Batch number ``steps`` of D_meta in its seeded order (pass after pass)."""
        per_pass = len(self.loader)
        if self._batches is None:
            epoch, done = divmod(self.steps, per_pass)
            self.loader.set_epoch(epoch)
            self._batches = iter(self.loader)
            for _ in range(done):
                next(self._batches)
        batch = next(self._batches, None)
        if batch is None:
            self.loader.set_epoch(self.loader.epoch + 1)
            self._batches = iter(self.loader)
            batch = next(self._batches)
        return batch.x, batch.y
