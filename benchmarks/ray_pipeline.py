"""The Ray Data pipeline (``phota_async.ray``) beside ``enhance_many`` in one process, against
the same emulator on the same machine.

    python benchmarks/ray_pipeline.py            # 300 photos each way
    python benchmarks/ray_pipeline.py --quick    # 20 photos: checks that it works

Both enhance 256 px JPEGs as keyed jobs (submit, poll, download). Printed: throughput in rows
a second (wall time from the first batch to the last row: Ray's start-up of workers and
actors is excluded, and shown apart) and
milliseconds of client CPU per row: user+sys of the enhance_many process; for Ray, of the
driver plus every actor process (Ray's own daemons, raylet and GCS, are not counted). Each side
runs in a process of its own. Nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ACTORS = 2


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _photos(folder: Path, count: int) -> None:
    from phota_async.testing._images import sample_photo

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        buf = io.BytesIO()
        sample_photo(i + 1, (256, 256)).save(buf, format="JPEG", quality=80)
        (folder / f"photo{i:04d}.jpg").write_bytes(buf.getvalue())


def _polls() -> Any:
    from phota_async import Cadence, PollPolicy

    return PollPolicy(job=Cadence(first=0.1, cap=0.5), max_polls_per_second=200.0)


def run_many(base_url: str, key: str, folder: Path) -> dict[str, float]:
    """``enhance_many`` over the folder, keyed jobs, in this process."""
    from phota_async import PhotaClient

    paths = sorted(folder.iterdir())

    async def go() -> int:
        async with PhotaClient(key, base_url, poll=_polls()) as phota:
            done = 0
            async for item in phota.enhance_many(paths, concurrency=32, via_job=True):
                if item.ok:
                    await item.result.read()  # type: ignore[union-attr]
                    done += 1
            return done

    cpu, start = _cpu(), time.perf_counter()
    done = asyncio.run(go())
    wall = time.perf_counter() - start
    return {"rows": done, "wall": wall, "cpu": _cpu() - cpu}


def run_ray(base_url: str, key: str, folder: Path, marks: Path) -> dict[str, float]:
    """The Ray pipeline over the folder on a local two-CPU instance."""
    import ray

    from phota_async.ray import PhotaEnhance, close_governor, secret

    class Timed(PhotaEnhance):
        """Records its process's CPU time after every batch (one file per actor process)."""

        async def __call__(self, batch: Any) -> Any:
            if self._first is None:
                self._first = time.time()
            async for table in super().__call__(batch):
                yield table
            mark = [self._cpu0, _cpu(), self._first]
            (marks / str(os.getpid())).write_text(json.dumps(mark))

        def __init__(self, **kwargs: Any) -> None:
            self._cpu0 = _cpu()
            self._first: float | None = None
            super().__init__(**kwargs)

    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False,
             object_store_memory=150 * 1024 * 1024, log_to_driver=False)  # fmt: skip
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        cpu, start = _cpu(), time.perf_counter()
        ds = ray.data.read_binary_files(str(folder), include_paths=True)
        out = ds.map_batches(
            Timed,
            fn_constructor_kwargs={"run_id": f"bench-{os.getpid()}", "api_key": secret(key),
                                   "base_url": base_url, "client_options": {"poll": _polls()}},
            concurrency=ACTORS, batch_size=16, num_cpus=0.25,
        )  # fmt: skip
        done = sum(1 for row in out.iter_rows() if row["error"] is None)
        wall = time.perf_counter() - start
        end = time.time()
        driver = _cpu() - cpu
        close_governor(f"bench-{os.getpid()}")
    finally:
        ray.shutdown()
    figures = [json.loads(p.read_text()) for p in marks.iterdir()]
    actors = sum(b - a for a, b, _ in figures)
    # From the first batch any actor started: Ray's start-up (workers, actors) left out.
    busy = end - min(first for _, _, first in figures)
    return {"rows": done, "wall": busy, "startup": wall - busy, "cpu": driver + actors,
            "driver": driver, "actors": actors}  # fmt: skip


def bench_ray(quick: bool, server: Any) -> list[tuple[str, float, str, bool, str]]:
    """The rows for ``run.py``: throughput and CPU per row of both, and their ratios."""
    count = 20 if quick else 300
    with (
        tempfile.TemporaryDirectory() as tmp,
        server(max_output_side=256, job_run_seconds=0.05, balance=1e9) as srv,
    ):
        folder = Path(tmp) / "in"
        _photos(folder, count)
        figures = {}
        for side in ("many", "ray"):
            marks = Path(tmp) / f"marks-{side}"
            marks.mkdir()
            argv = [sys.executable, __file__, "--child", side, srv["base_url"], srv["api_key"],
                    str(folder), str(marks)]  # fmt: skip
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            figures[side] = json.loads(out.strip().splitlines()[-1])
    many, ray_ = figures["many"], figures["ray"]
    rate_many, rate_ray = many["rows"] / many["wall"], ray_["rows"] / ray_["wall"]
    ms_many, ms_ray = 1000 * many["cpu"] / many["rows"], 1000 * ray_["cpu"] / ray_["rows"]
    return [
        ("ray: rows/s, enhance_many (1 process)", rate_many, "-", True, ""),
        (f"ray: rows/s, Ray pipeline ({ACTORS} actors)", rate_ray, "-", True, ""),
        ("ray: throughput, Ray / enhance_many", rate_ray / rate_many, "about 1 on 2 cores",
         rate_ray / rate_many > 0.5, "x"),
        ("ray: client CPU ms/row, enhance_many", ms_many, "-", True, " ms"),
        ("ray: client CPU ms/row, Ray driver+actors", ms_ray, "small", True, " ms"),
        ("ray: client CPU ms/row, Ray driver alone", 1000 * ray_["driver"] / ray_["rows"], "-",
         True, " ms"),
        ("ray: Ray start-up before the first batch (not counted)", ray_["startup"], "-", True,
         " s"),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side, base_url, key, folder, marks = args.child
        if side == "many":
            result = run_many(base_url, key, Path(folder))
        else:
            result = run_ray(base_url, key, Path(folder), Path(marks))
        print(json.dumps(result), flush=True)
        return 0
    sys.path.insert(0, str(HERE))
    from run import server

    for figure, value, target, _, shown in bench_ray(args.quick, server):
        print(f"{figure}: {value:.2f}{shown} (target {target})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
