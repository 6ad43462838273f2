"""Pure planning of distributed work: tasks of chips, and the deterministic split into shards.

A task is what one worker does in one call: read its chips' windows itself,
run the detector, return small records. Tasks cut each group of same-size chips
(in the local engine's order) into runs of ``chips_per_task`` chips, a multiple
of the batch size, so the detector sees exactly the batches the local engine
builds and the results match it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from geoal.errors import ConfigError
from geoal.raster.chip import Chip, group_by_size

__all__ = ["Shard", "Task", "group_by_size", "parse_shard", "plan_tasks"]


@dataclass(frozen=True)
class Task:
    """Chips for one worker call; each carries the scene it is read from."""

    chips: tuple[Chip, ...]

    def __len__(self) -> int:
        return len(self.chips)


def plan_tasks(chips: Sequence[Chip], chips_per_task: int, batch: int) -> Iterator[Task]:
    """Tasks of at most ``chips_per_task`` same-size chips (rounded up to whole batches).

    Every chip is in exactly one task; within a size group, task k holds chips
    [k * n, (k + 1) * n), so batches of ``batch`` line up with the local engine's.
    """
    if chips_per_task < 1 or batch < 1:
        raise ValueError(f"chips_per_task and batch must be >= 1, got {chips_per_task}, {batch}")
    per_task = -(-chips_per_task // batch) * batch
    for group in group_by_size(chips):
        for start in range(0, len(group), per_task):
            yield Task(tuple(group[start : start + per_task]))


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based): the chips whose id % count == index."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(
                f"--shard {self.index}/{self.count}: give I/N with N >= 1 and 0 <= I < N "
                "(e.g. 0/8 ... 7/8; with SLURM: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, chip_id: int) -> bool:
        """Whether the chip belongs to this shard."""
        return chip_id % self.count == self.index

    def select(self, chips: Sequence[Chip]) -> list[Chip]:
        """The chips of this shard, order kept."""
        return [chip for chip in chips if self.holds(chip.id)]


_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> Shard:
    """'I/N' -> Shard(I, N); raises ConfigError naming the value otherwise."""
    match = _SHARD.match(text)
    if not match:
        raise ConfigError(f"--shard {text!r}: give I/N, e.g. 0/8 (shard 0 of 8, 0-based)")
    return Shard(int(match[1]), int(match[2]))
