"""What checking a studio call's options costs, per call (``_validate``, in this process).

Options are checked once per call (and once per batch before it starts), never per attempt;
this keeps the figure honest: microseconds of CPU for a typical set of options, against the
milliseconds a call takes.
"""

from __future__ import annotations

import time
from typing import Any

from phota_async import _validate as validate

Row = tuple[str, float, str, bool, str]


def _per_call_us(check: Any, calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        check()
    return (time.process_time() - started) / calls * 1e6


def bench_validate(quick: bool) -> list[Row]:
    calls = 200 if quick else 200_000
    enhance = {"profile_ids": ["prof_a", "prof_b"], "prompt": "brighter [[prof_a]]", "n": 2}
    generate = {"n": 4, "aspect_ratio": "16:9", "base_model": "gpt-image-2", "quality": "high"}
    figures = {
        "enhance": _per_call_us(lambda: validate.enhance_fields(enhance, "enhance"), calls),
        "generate": _per_call_us(
            lambda: validate.generate_call("[[prof_a]] in a garden", generate, "generate"), calls
        ),
    }
    limit = 50.0
    return [
        (f"{name} option checks per call", us, f"<= {limit:g} us", us <= limit, " us")
        for name, us in figures.items()
    ]


if __name__ == "__main__":
    for figure, value, target, met, unit in bench_validate(quick=False):
        print(f"{figure}: {value:.2f}{unit} (target {target}, {'met' if met else 'not met'})")
