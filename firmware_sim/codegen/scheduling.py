"""The row schedule of the generated C: every layer computes one output row at a time when its consumer asks
for it, so each activation lives in a ring of a few rows. :func:`schedule` simulates that pull order and sizes
each ring to the rows that must stay alive."""

from __future__ import annotations

from dataclasses import dataclass

from .plan import DecoderPlan


@dataclass(frozen=True)
class Schedule:
    ring_rows: tuple[
        int, ...
    ]  # rows kept of each stored image (the dense output, then each conv but the last)
    need_hi: tuple[tuple[int, ...], ...]  # per conv, per py: the largest dy (rows of input beyond Q·Y)


def schedule(plan: DecoderPlan) -> Schedule:
    """Simulate the pull order of the generated C and size each ring to the rows that must stay alive."""
    shapes = [plan.dense.out_shape] + [c.out_shape for c in plan.convs]
    need_lo, need_hi = [], []
    for c in plan.convs:
        lo_py, hi_py = [], []
        for py in range(c.P):
            dys = [dy for px in range(c.P) for dy, _ in c.phases[py * c.P + px].taps]
            lo_py.append(min(dys))
            hi_py.append(max(dys))
        need_lo.append(lo_py)
        need_hi.append(hi_py)
    done = [0] * len(shapes)
    span = [1] * len(shapes)

    def rows_needed(k: int, r: int) -> tuple[int, int]:
        c = plan.convs[k - 1]
        base = c.Q * (r // c.P)
        ih = c.in_shape[0]
        return max(0, base + need_lo[k - 1][r % c.P]), min(ih - 1, base + need_hi[k - 1][r % c.P])

    def ensure(k: int, upto: int) -> None:
        while done[k] <= upto:
            r = done[k]
            if k > 0:
                lo, hi = rows_needed(k, r)
                ensure(k - 1, hi)
                if hi >= lo:
                    span[k - 1] = max(span[k - 1], done[k - 1] - lo)
            done[k] += 1

    ensure(len(shapes) - 1, shapes[-1][0] - 1)
    return Schedule(
        ring_rows=tuple(min(s, shapes[k][0]) for k, s in enumerate(span[:-1])),
        need_hi=tuple(tuple(h) for h in need_hi),
    )
