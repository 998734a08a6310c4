"""ShapesWorld language: varied captions and VQA triples per scene.

Captions come from several templates with synonyms, word-order and detail variations. They all
name the scene's main (largest) object first, so its colour is the first colour word of every
caption: the ``topic`` target is learnable from the caption text alone.

Questions: five types (existence, count, attribute, spatial, comparison). For yes/no forms the
answer is drawn first (50/50) and a question with that answer is built, so the question text
alone does not reveal the answer. :func:`make_question` draws a scene's one question;
:func:`make_questions` draws extra distinct ones (the ``questions`` option of the generator).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from omnifuse.datasets.render import COLOURS, SHAPES
from omnifuse.datasets.scenes import Scene, SceneObject, region, relation

QUESTION_TYPES = ("existence", "count", "attribute", "spatial", "comparison")
MAX_OBJECTS = 4
ANSWERS: tuple[str, ...] = (
    *("yes", "no"),
    *(str(n) for n in range(MAX_OBJECTS + 1)),
    *COLOURS,
    *SHAPES,
    *("small", "large", "left", "right", "above", "below"),
)
"""Every answer a question can have: VQA is classification over this closed vocabulary."""
NUMBER_WORDS = ("zero", "one", "two", "three", "four")
_SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
_PICTURES = ("a picture", "an image", "a drawing", "a scene")
_RELATION_WORDS = {
    "left of": ("to the left of", "left of", "on the left of"),
    "right of": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
_OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}

QA = tuple[str, str]
Template = Callable[[Scene, np.random.Generator], str | None]


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(obj: SceneObject, rng: np.random.Generator, size: bool | None = None) -> str:
    """``"a big red circle"``; ``size=None`` mentions the size half of the time."""
    with_size = bool(rng.random() < 0.5) if size is None else size
    words = [_pick(rng, _SIZE_WORDS[obj.size])] if with_size else []
    words += [obj.colour, obj.shape]
    return f"{_article(words[0])} {' '.join(words)}"


def _listing(objects: Sequence[SceneObject], rng: np.random.Generator) -> str:
    """``"a red circle, a blue star and a small green square"``."""
    return _join([noun_phrase(obj, rng) for obj in objects])


def _others(scene: Scene, rng: np.random.Generator) -> list[SceneObject]:
    """Every object but the main one, in random order."""
    others = [obj for obj in scene.objects if obj is not scene.main]
    return [others[int(i)] for i in rng.permutation(len(others))]


def _shapes(count: int) -> str:
    return f"{NUMBER_WORDS[count]} {'shape' if count == 1 else 'shapes'}"


def _join(phrases: Sequence[str]) -> str:
    """``"a, b and c"``."""
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def _t_list(scene: Scene, rng: np.random.Generator, with_region: float = 0.4) -> str:
    """Every object, the main one first (with its region with probability ``with_region``)."""
    head = noun_phrase(scene.main, rng)
    if rng.random() < with_region:
        head += f" {region(scene.main)}"
    return _join([head, *(noun_phrase(obj, rng) for obj in _others(scene, rng))])


def identifying_caption(scene: Scene, rng: np.random.Generator) -> str:
    """``"a big red circle in the top left, a blue star and a small green square"``: every
    object, and where the main one is. The first caption of every scene (the ``caption``/``text``
    a retrieval pool ranks): the other templates drop objects or places ("a single red hexagon"
    fits every lone red hexagon), which capped image->text R@1 among 500 at 0.568."""
    return _t_list(scene, rng, with_region=1.0)


def _t_picture(scene: Scene, rng: np.random.Generator) -> str:
    head = f"{_pick(rng, _PICTURES)} {_pick(rng, ('of', 'showing', 'with'))}"
    head += f" {noun_phrase(scene.main, rng)}"
    others = _others(scene, rng)
    if not others:
        return head
    if rng.random() < 0.5:
        noun = "shape" if len(others) == 1 else "shapes"
        return f"{head} and {NUMBER_WORDS[len(others)]} other {noun}"
    return f"{head} next to {_listing(others, rng)}"


def _t_count(scene: Scene, rng: np.random.Generator) -> str:
    if len(scene.objects) == 1:
        main = scene.main
        return _pick(rng, (f"a single {main.name}", f"just one shape, {noun_phrase(main, rng)}"))
    listing = _listing([scene.main, *_others(scene, rng)], rng)
    return f"{_shapes(len(scene.objects))}: {listing}"


def _t_spatial(scene: Scene, rng: np.random.Generator) -> str | None:
    main, others = scene.main, _others(scene, rng)
    for other in others:
        rel = relation(main, other, _pick(rng, ("x", "y")))
        if rel is not None:
            words = _pick(rng, _RELATION_WORDS[rel])
            text = f"{noun_phrase(main, rng)} {words} {noun_phrase(other, rng)}"
            rest = [obj for obj in others if obj is not other]
            joiner = _pick(rng, ("plus", "and also", "with"))
            return text if not rest else f"{text}, {joiner} {_listing(rest, rng)}"
    return None


def _t_biggest(scene: Scene, rng: np.random.Generator) -> str | None:
    if len(scene.objects) == 1:
        return None
    superlative = _pick(rng, ("biggest", "largest"))
    name = scene.main.name
    return (
        f"there are {_shapes(len(scene.objects))} and the {superlative} is {_article(name)} {name}"
    )


def _t_region(scene: Scene, rng: np.random.Generator) -> str:
    text = f"{noun_phrase(scene.main, rng, size=True)} {region(scene.main)}"
    return text if len(scene.objects) == 1 else f"{text} among {_shapes(len(scene.objects) - 1)}"


_TEMPLATES: tuple[Template, ...] = (
    _t_list,
    _t_picture,
    _t_count,
    _t_spatial,
    _t_biggest,
    _t_region,
)


def make_captions(scene: Scene, rng: np.random.Generator, count: int = 5) -> list[str]:
    """Up to ``count`` distinct captions of ``scene`` (lowercase, no final full stop): the
    :func:`identifying_caption` first, then varied templates."""
    captions = [identifying_caption(scene, rng)]
    for attempt in range(count * 8):
        if len(captions) >= count:
            break
        if attempt % len(_TEMPLATES) == 0:
            order = [_TEMPLATES[int(i)] for i in rng.permutation(len(_TEMPLATES))]
        caption = order[attempt % len(_TEMPLATES)](scene, rng)
        if caption is not None and caption not in captions:
            captions.append(caption)
    return captions


def retrieval_ceiling(
    scenes: Sequence[Scene], texts: Sequence[str], draws: int = 5000, seed: int = 0
) -> float:
    """Expected image->text R@1 of an oracle that knows every scene exactly.

    Many captions fit several scenes ("a single red hexagon" fits every lone red hexagon), so even
    a perfect model cannot tell which of the consistent captions in the pool is the one written
    for a scene. The oracle ranks first, at random, one of the pool's captions that
    :func:`make_captions` can produce for the scene: its expected R@1 is the mean of
    ``1 / consistent`` over the scenes.

    Every caption names its scene's main object first, so only captions of scenes with the same
    main object are candidates; each is tested by drawing up to ``draws`` captions of the scene
    (stopping once all are found). A caption never drawn counts as inconsistent, so the value is
    an upper bound that tightens with ``draws``.

    Args:
        scenes: one scene per pair of the pool, in pool order.
        texts: the caption paired with each scene (the pool of candidates).
    """
    if len(scenes) != len(texts):
        raise ValueError(f"{len(scenes)} scenes but {len(texts)} texts")
    rng = np.random.default_rng(seed)
    by_main: dict[str, list[int]] = {}
    for index, scene in enumerate(scenes):
        by_main.setdefault(scene.main.name, []).append(index)
    total = 0.0
    for index, scene in enumerate(scenes):
        unseen = {texts[j] for j in by_main[scene.main.name]} - {texts[index]}
        for _ in range(draws if unseen else 0):
            unseen.discard(make_captions(scene, rng, count=1)[0])
            if not unseen:
                break
        consistent = [j for j in by_main[scene.main.name] if texts[j] not in unseen]
        total += 1.0 / len(consistent)
    return total / max(len(scenes), 1)


# --- questions -------------------------------------------------------------------------------


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _q_existence(scene: Scene, rng: np.random.Generator) -> QA | None:
    want, form = bool(rng.random() < 0.5), _pick(rng, ("combo", "shape", "colour"))
    names = {obj.name for obj in scene.objects}
    if form == "combo":
        pool = [f"{c} {s}" for c in COLOURS for s in SHAPES if (f"{c} {s}" in names) == want]
        name = _pick(rng, pool)
        return f"is there {_article(name)} {name}?", _yes(want)
    if form == "shape":
        shapes = [s for s in SHAPES if any(o.shape == s for o in scene.objects) == want]
        return _pick(rng, ("is there a {}?", "is there a {} in the picture?")).format(
            _pick(rng, shapes)
        ), _yes(want)
    colours = [c for c in COLOURS if any(o.colour == c for o in scene.objects) == want]
    return _pick(rng, ("is there anything {}?", "are there any {} shapes?")).format(
        _pick(rng, colours)
    ), _yes(want)


def _q_count(scene: Scene, rng: np.random.Generator) -> QA:
    form = _pick(rng, ("all", "colour", "shape", "size"))
    if form == "all":
        return _pick(
            rng, ("how many shapes are there?", "how many objects are in the picture?")
        ), str(len(scene.objects))
    present = {
        "colour": [o.colour for o in scene.objects],
        "shape": [o.shape for o in scene.objects],
        "size": [o.size for o in scene.objects],
    }[form]
    universe = {"colour": tuple(COLOURS), "shape": SHAPES, "size": ("small", "large")}[form]
    value = _pick(rng, present) if rng.random() < 0.75 else _pick(rng, universe)
    question = (
        f"how many {value}s are there?"
        if form == "shape"
        else f"how many {value} shapes are there?"
    )
    return question, str(present.count(value))


def _q_attribute(scene: Scene, rng: np.random.Generator) -> QA | None:
    form = _pick(rng, ("colour", "shape", "size"))
    objs = scene.objects
    if form == "colour":
        unique = [o for o in objs if [p.shape for p in objs].count(o.shape) == 1]
        obj = unique[int(rng.integers(len(unique)))] if unique else None
        return None if obj is None else (f"what colour is the {obj.shape}?", obj.colour)
    if form == "shape":
        unique = [o for o in objs if [p.colour for p in objs].count(o.colour) == 1]
        obj = unique[int(rng.integers(len(unique)))] if unique else None
        template = _pick(
            rng, ("what shape is the {} object?", "what is the shape of the {} object?")
        )
        return None if obj is None else (template.format(obj.colour), obj.shape)
    obj = objs[int(rng.integers(len(objs)))]
    template = _pick(rng, ("what size is the {}?", "is the {} small or large?"))
    return template.format(obj.name), obj.size


def _clear_relations(scene: Scene) -> list[tuple[SceneObject, SceneObject, str, str]]:
    """Every ordered pair with a clear relation: (a, b, axis, relation of a to b)."""
    found = []
    for a in scene.objects:
        for b in scene.objects:
            for axis in ("x", "y"):
                rel = relation(a, b, axis) if a is not b else None
                if rel is not None:
                    found.append((a, b, axis, rel))
    return found


def _q_spatial(scene: Scene, rng: np.random.Generator) -> QA | None:
    candidates = _clear_relations(scene)
    if not candidates:
        return None
    a, b, axis, rel = candidates[int(rng.integers(len(candidates)))]
    if rng.random() < 0.3:
        choice = "to the left or to the right of" if axis == "x" else "above or below"
        return f"is the {a.name} {choice} the {b.name}?", rel.split()[0]
    want = bool(rng.random() < 0.5)
    asked = rel if want else _OPPOSITE[rel]
    return f"is the {a.name} {_pick(rng, _RELATION_WORDS[asked])} the {b.name}?", _yes(want)


def _q_bigger(scene: Scene, rng: np.random.Generator, want: bool) -> QA | None:
    pairs = [
        (a, b)
        for a in scene.objects
        for b in scene.objects
        if a.size == "large" and b.size == "small"
    ]
    if not pairs:
        return None
    large, small = pairs[int(rng.integers(len(pairs)))]
    if rng.random() < 0.5:
        a, b = (large, small) if want else (small, large)
        return f"is the {a.name} bigger than the {b.name}?", _yes(want)
    a, b = (small, large) if want else (large, small)
    return f"is the {a.name} smaller than the {b.name}?", _yes(want)


def _q_more(scene: Scene, rng: np.random.Generator, want: bool) -> QA | None:
    attr = _pick(rng, ("colour", "shape"))
    values = COLOURS if attr == "colour" else SHAPES
    counts = {v: sum(getattr(o, attr) == v for o in scene.objects) for v in values}
    pairs = [(x, y) for x in values for y in values if x != y and (counts[x] > counts[y]) == want]
    if not pairs:
        return None
    x, y = pairs[int(rng.integers(len(pairs)))]
    if attr == "colour":
        return f"are there more {x} shapes than {y} shapes?", _yes(want)
    return f"are there more {x}s than {y}s?", _yes(want)


def _q_comparison(scene: Scene, rng: np.random.Generator) -> QA | None:
    want = bool(rng.random() < 0.5)
    if rng.random() < 0.5:
        return _q_bigger(scene, rng, want) or _q_more(scene, rng, want)
    return _q_more(scene, rng, want)


_QUESTIONS: dict[str, Callable[[Scene, np.random.Generator], QA | None]] = {
    "existence": _q_existence,
    "count": _q_count,
    "attribute": _q_attribute,
    "spatial": _q_spatial,
    "comparison": _q_comparison,
}


def make_question(scene: Scene, rng: np.random.Generator) -> tuple[str, str, str]:
    """One ``(question, answer, question_type)`` about ``scene``; types are drawn uniformly and
    fall through to the next (random) type when the scene cannot support one."""
    for i in rng.permutation(len(QUESTION_TYPES)):
        qtype = QUESTION_TYPES[int(i)]
        qa = _QUESTIONS[qtype](scene, rng)
        if qa is not None:
            return qa[0], qa[1], qtype
    raise RuntimeError(f"no question fits scene {scene.describe()!r}")  # count always fits


def make_questions(
    scene: Scene, rng: np.random.Generator, count: int, exclude: Sequence[str] = ()
) -> list[tuple[str, str, str]]:
    """Up to ``count`` distinct ``(question, answer, question_type)`` triples about ``scene``.

    Each is drawn by :func:`make_question`, so types and yes/no answers keep its distribution;
    a question already drawn or listed in ``exclude`` (the row's own question) is drawn again,
    at most ``8 * count`` draws in all: a one-object scene supports few distinct questions.
    """
    seen = set(exclude)
    found: list[tuple[str, str, str]] = []
    for _ in range(8 * count):
        if len(found) >= count:
            break
        triple = make_question(scene, rng)
        if triple[0] not in seen:
            seen.add(triple[0])
            found.append(triple)
    return found
