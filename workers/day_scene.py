"""A camera's day, compressed: idle stretches, people seated still, and busy stretches of people walking
in and out, made from the photos ultralytics ships (see `workers.scenes`).

`day_actors(seconds, seed)` plans one camera's recording: the same seed gives the same recording. The
plan is stretches of a few minutes (scaled to the length asked for), in a seeded order:

- idle (about 40 % of the time): an empty room, only sensor noise moving;
- seated (about 25 %): one to three people who stay put and sway by a few pixels, as diners do;
- busy (about 35 %): people walking in from either edge, crossing or stopping a while, and leaving.
"""

from __future__ import annotations

import random

from workers.scenes import Actor

KINDS = (("idle", 0.40), ("seated", 0.25), ("busy", 0.35))
STRETCH_SECONDS = 240.0  # a stretch of an hour-long day; shorter days scale it down
SPRITE_WIDTH = 0.09  # of a 1080p frame: the man cut from bus.jpg, as `scenes` scales him


def day_actors(seconds: float, seed: int, *, stretch: float | None = None) -> tuple[Actor, ...]:
    """The people in one camera's recording of `seconds`, planned from `seed`."""
    rng = random.Random(seed)
    stretch = stretch or max(20.0, min(STRETCH_SECONDS, seconds / 15))
    stretches = max(1, round(seconds / stretch))
    kinds: list[str] = []
    for kind, share in KINDS:
        kinds += [kind] * max(1, round(share * stretches))
    rng.shuffle(kinds)
    length = seconds / len(kinds)
    actors: list[Actor] = []
    for i, kind in enumerate(kinds):
        start, end = i * length, (i + 1) * length
        if kind == "seated":
            for k in range(rng.randint(1, 3)):
                actors.append(Actor("man", 0.08 + 0.3 * k + rng.uniform(0, 0.1), start + rng.uniform(0, 3),
                                    end - rng.uniform(0, 3), sway=3.0))
        elif kind == "busy":
            t = start + rng.uniform(0, 4)
            while t < end - 8:
                actors.append(_walker(rng, t, end))
                t += rng.uniform(6, 20)
    return tuple(actors)


def _walker(rng: random.Random, enter: float, limit: float) -> Actor:
    """Someone who walks in from one edge and out at the other (or is there when the stretch ends)."""
    speed = rng.uniform(0.06, 0.15)  # frame widths a second
    from_left = rng.random() < 0.5
    x = -SPRITE_WIDTH * 0.5 if from_left else 1.0 - SPRITE_WIDTH * 0.5
    walk = speed if from_left else -speed
    crossing = (1.0 + SPRITE_WIDTH) / speed
    leave = min(limit, enter + crossing)
    return Actor("man", x, enter, leave, walk=walk, sway=0.0)
