"""Task samplers: proportions, determinism, resumability."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from omnifuse.training.samplers import build_sampler, task_probabilities

SIZES = {"a": 100, "b": 300, "c": 600}
DRAWS = 6000


def frequencies(
    kind: str, temperature: float = 1.0, seed: int = 0, ratios: dict[str, float] | None = None
) -> dict[str, float]:
    sampler = build_sampler(kind, SIZES, temperature, seed, ratios)
    counts = Counter(sampler.draw(1)[0] for _ in range(DRAWS))
    return {name: counts[name] / DRAWS for name in SIZES}


@pytest.mark.parametrize(
    ("kind", "temperature", "ratios", "expected"),
    [
        ("proportional", 1.0, None, [0.1, 0.3, 0.6]),
        # p ∝ n^(1/2): sqrt(100), sqrt(300), sqrt(600) = 10, 17.32, 24.49
        ("temperature", 2.0, None, [10 / 51.81, 17.32 / 51.81, 24.49 / 51.81]),
        ("uniform", 1.0, None, [1 / 3] * 3),
        # ratios multiply: uniform with a: 4, c: 0.5 -> 4, 1, 0.5 out of 5.5
        ("uniform", 1.0, {"a": 4.0, "c": 0.5}, [4 / 5.5, 1 / 5.5, 0.5 / 5.5]),
        # proportional with b: 2 -> 100, 600, 600 out of 1300
        ("proportional", 1.0, {"b": 2.0}, [1 / 13, 6 / 13, 6 / 13]),
    ],
)
def test_sampler_frequencies_match_probabilities(
    kind: str, temperature: float, ratios: dict[str, float] | None, expected: list[float]
) -> None:
    probs = task_probabilities(kind, SIZES, temperature, ratios)
    assert probs == pytest.approx(expected, abs=1e-3)
    observed = frequencies(kind, temperature, ratios=ratios)
    for name, p in zip(SIZES, expected, strict=True):
        # 4 standard deviations of a binomial share: fails by chance with p < 1e-4.
        tolerance = 4 * math.sqrt(p * (1 - p) / DRAWS)
        assert abs(observed[name] - p) < tolerance, (name, observed[name], p)


def test_round_robin_cycles_in_config_order() -> None:
    sampler = build_sampler("round_robin", SIZES)
    assert [sampler.draw(1)[0] for _ in range(5)] == ["a", "b", "c", "a", "b"]
    assert sampler.draw(2) == ["a", "c"]  # the next two in turn (c, a), in config order
    assert sampler.draw(1) == ["b"]
    resumed = build_sampler("round_robin", SIZES)
    resumed.load_state_dict(sampler.state_dict())
    assert resumed.draw(1) == ["c"]


def test_k_draws_are_distinct_and_in_config_order() -> None:
    sampler = build_sampler("proportional", SIZES, seed=3)
    for _ in range(200):
        chosen = sampler.draw(2)
        assert len(set(chosen)) == 2
        assert chosen == sorted(chosen, key=list(SIZES).index)


def test_same_seed_same_draws_other_seed_differs() -> None:
    a = build_sampler("temperature", SIZES, 2.0, seed=7)
    b = build_sampler("temperature", SIZES, 2.0, seed=7)
    c = build_sampler("temperature", SIZES, 2.0, seed=8)
    seq_a = [a.draw(1)[0] for _ in range(100)]
    assert seq_a == [b.draw(1)[0] for _ in range(100)]
    assert seq_a != [c.draw(1)[0] for _ in range(100)]


def test_state_dict_resumes_the_sequence() -> None:
    full = build_sampler("proportional", SIZES, seed=1)
    expected = [full.draw(1)[0] for _ in range(50)]
    part = build_sampler("proportional", SIZES, seed=1)
    head = [part.draw(1)[0] for _ in range(20)]
    resumed = build_sampler("proportional", SIZES, seed=1)
    resumed.load_state_dict(part.state_dict())
    assert head + [resumed.draw(1)[0] for _ in range(30)] == expected


@pytest.mark.parametrize("kind", ["uniform", "proportional", "round_robin"])
def test_curriculum_draws_only_its_tasks_first(kind: str) -> None:
    ratios = None if kind == "round_robin" else {"a": 5.0}
    sampler = build_sampler(kind, SIZES, seed=2, ratios=ratios, curriculum=(40, ["c", "b"]))
    first = [sampler.draw(1)[0] for _ in range(40)]
    later = [sampler.draw(1)[0] for _ in range(400)]
    assert set(first) == {"b", "c"}  # both curriculum tasks, never "a"
    assert set(later) == {"a", "b", "c"}
    assert sampler.draw(3) == ["a", "b", "c"]


def test_curriculum_keeps_the_later_sequence_and_resumes_across_its_end() -> None:
    plain = build_sampler("uniform", SIZES, seed=4)
    staged = build_sampler("uniform", SIZES, seed=4, curriculum=(10, ["b"]))
    plain_draws = [plain.draw(1)[0] for _ in range(30)]
    staged_draws = [staged.draw(1)[0] for _ in range(30)]
    assert staged_draws[:10] == ["b"] * 10
    assert staged_draws[10:] == plain_draws[10:]  # after the curriculum: the same draws
    part = build_sampler("uniform", SIZES, seed=4, curriculum=(10, ["b"]))
    head = [part.draw(1)[0] for _ in range(7)]
    resumed = build_sampler("uniform", SIZES, seed=4, curriculum=(10, ["b"]))
    resumed.load_state_dict(part.state_dict())
    assert head + [resumed.draw(1)[0] for _ in range(23)] == staged_draws


def test_curriculum_of_unknown_tasks_is_refused() -> None:
    with pytest.raises(ValueError, match=r"curriculum tasks \['z'\] are not among"):
        build_sampler("uniform", SIZES, curriculum=(5, ["a", "z"]))


def test_state_of_other_tasks_is_refused() -> None:
    state = build_sampler("uniform", SIZES).state_dict()
    other = build_sampler("uniform", {"a": 1, "b": 1})
    with pytest.raises(ValueError, match="cannot resume the task sampler"):
        other.load_state_dict(state)


def test_bad_sampler_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="unknown task sampler 'random'; valid choices"):
        task_probabilities("random", SIZES)
    with pytest.raises(ValueError, match=r"tasks \['b'\] have no training samples"):
        task_probabilities("proportional", {"a": 3, "b": 0})
    with pytest.raises(ValueError, match="ratios need a weighted sampler"):
        task_probabilities("round_robin", SIZES, ratios={"a": 2.0})
