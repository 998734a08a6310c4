"""Task samplers: which task(s) each training step trains.

Every weighted draw is a pure function of ``(seed, draw index)`` and round-robin keeps a cursor,
so a sampler's whole state is two integers; it is saved in checkpoints and a resumed run draws
exactly the tasks an uninterrupted one would. All ranks of a distributed run draw the same tasks
(same seed).

* ``proportional``: ``p_t ∝ n_t`` (dataset sizes);
* ``temperature``: ``p_t ∝ n_t^(1/T)`` (T = 1 is proportional, T → ∞ uniform);
* ``uniform``: ``p_t = 1 / num_tasks``;
* ``round_robin``: the tasks in turn, in config order.

``ratios`` (``training.multitask.ratios``) multiply a weighted sampler's probabilities per task
before renormalising. A curriculum (``training.multitask.curriculum``) restricts the first draws
to some tasks: the same sampler over those tasks alone (probabilities renormalised among them).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

SAMPLERS = ("proportional", "temperature", "round_robin", "uniform")


class TaskSampler:
    """Draws ``k`` distinct tasks per step.

    Args:
        names: Task names, in config order.
        probabilities: Probability of each task (same order; sums to 1); None for round-robin.
        seed: Seed of every draw.
        curriculum: ``(draws, tasks)``: the first ``draws`` draws pick from ``tasks`` only.
    """

    def __init__(
        self,
        names: Sequence[str],
        probabilities: Sequence[float] | None,
        seed: int = 0,
        curriculum: tuple[int, Sequence[str]] | None = None,
    ) -> None:
        if not names:
            raise ValueError("a task sampler needs at least one task")
        self.names = list(names)
        self.probabilities = None if probabilities is None else list(probabilities)
        self.seed = seed
        self.draws = 0
        self.position = 0  # round-robin cursor
        self.curriculum_draws, first = curriculum or (0, names)
        unknown = sorted(set(first) - set(names))
        if unknown or not first:
            raise ValueError(f"curriculum tasks {unknown or '[]'} are not among {self.names}")
        self.curriculum_tasks = [n for n in self.names if n in first]

    def draw(self, k: int) -> list[str]:
        """The ``k`` distinct tasks of the next step (all tasks when ``k >= num_tasks``).

        Tasks come back in config order, so their losses are summed in a fixed order.
        """
        index = self.draws
        self.draws += 1
        names = self.curriculum_tasks if index < self.curriculum_draws else self.names
        k = min(k, len(names))
        if k == len(names):
            return list(names)
        if self.probabilities is None:
            chosen = {names[(self.position + i) % len(names)] for i in range(k)}
            self.position = (self.position + k) % len(names)
        else:
            rng = random.Random(f"{self.seed}:{index}")
            chosen = self._weighted(rng, k, names)
        return [n for n in self.names if n in chosen]

    def _weighted(self, rng: random.Random, k: int, names: list[str]) -> set[str]:
        """``k`` of ``names`` without replacement, each draw proportional to the remaining
        weights."""
        weights = dict(zip(self.names, self.probabilities or (), strict=True))
        chosen: set[str] = set()
        for _ in range(k):
            pool = [n for n in names if n not in chosen]
            chosen.add(rng.choices(pool, weights=[weights[n] for n in pool])[0])
        return chosen

    def state_dict(self) -> dict[str, Any]:
        """Draws made so far (plus what they depend on, checked on load)."""
        return {
            "draws": self.draws,
            "position": self.position,
            "seed": self.seed,
            "names": list(self.names),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue after ``state["draws"]`` draws.

        Raises:
            ValueError: the state was saved for other tasks or another seed.
        """
        if list(state["names"]) != self.names or state["seed"] != self.seed:
            raise ValueError(
                f"cannot resume the task sampler: saved for tasks {state['names']} with seed "
                f"{state['seed']}, but this run has tasks {self.names} with seed {self.seed}"
            )
        self.draws = int(state["draws"])
        self.position = int(state.get("position", 0))


def task_probabilities(
    kind: str,
    sizes: Mapping[str, int],
    temperature: float = 1.0,
    ratios: Mapping[str, float] | None = None,
) -> list[float] | None:
    """Per-task probabilities (in ``sizes`` order) of sampler ``kind``, each multiplied by its
    ``ratios`` entry (default 1) and renormalised; None for round-robin.

    Raises:
        ValueError: an unknown kind, or a task whose dataset is empty for a size-based sampler.
    """
    if kind not in SAMPLERS:
        raise ValueError(f"unknown task sampler {kind!r}; valid choices: {', '.join(SAMPLERS)}")
    if kind == "round_robin":
        if ratios:
            raise ValueError("ratios need a weighted sampler, not round_robin")
        return None
    scale = [float((ratios or {}).get(name, 1.0)) for name in sizes]
    if kind == "uniform":
        return [r / sum(scale) for r in scale]
    empty = [name for name, n in sizes.items() if n <= 0]
    if empty:
        raise ValueError(f"tasks {empty} have no training samples; the {kind} sampler needs some")
    power = 1.0 if kind == "proportional" else 1.0 / temperature
    weights = [float(n) ** power * r for n, r in zip(sizes.values(), scale, strict=True)]
    total = sum(weights)
    return [w / total for w in weights]


def build_sampler(
    kind: str,
    sizes: Mapping[str, int],
    temperature: float = 1.0,
    seed: int = 0,
    ratios: Mapping[str, float] | None = None,
    curriculum: tuple[int, Sequence[str]] | None = None,
) -> TaskSampler:
    """A :class:`TaskSampler` over the tasks of ``sizes`` (task -> training samples);
    ``curriculum`` = ``(draws, tasks)`` restricts the first draws to ``tasks``."""
    probabilities = task_probabilities(kind, sizes, temperature, ratios)
    return TaskSampler(list(sizes), probabilities, seed, curriculum)
