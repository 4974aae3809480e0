"""``DatasetSpec``: the static facts about a dataset that models and training size themselves from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    """Shape, classes, per-channel statistics (of [0, 1] pixels) and default augmentation.

    ``crop_padding`` is the zero padding of the random crop (0: no crop); ``flip`` enables random
    horizontal flips. ``mean`` and ``std`` have one entry per channel and are what the model's
    input normalisation uses; the data itself stays in [0, 1].
    """

    name: str
    channels: int
    image_size: int
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 0
    flip: bool = False

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes"
            )
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"{self.name}: mean/std need one value per channel ({self.channels})")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return (self.channels, self.image_size, self.image_size)
