"""Enhance a folder of photos on Ray Data, paying for each photo once across the cluster.

    python examples/ray_enhance.py photos/ enhanced/ --run-id nightly-1127 --actors 4
    python examples/ray_enhance.py s3://bucket/photos/ /mnt/out --address auto --budget 20

Writes every output into the target folder and a results table (``results.csv``: one line a
photo, with its outputs, job, cost and error). Rerun it with the same ``--run-id`` after a
crash: photos whose outputs are in the folder are skipped, the others are resubmitted under the
same keys, and the API charges none of them twice. Needs PHOTA_API_KEY (and PHOTA_BASE_URL for
the emulator) where it is started; the key travels to the workers as a Ray object reference.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Sequence
from pathlib import Path

import ray

from phota_async.ray import PhotaEnhance, close_governor, governor, secret

SUFFIXES = ["jpg", "jpeg", "png", "webp", "heic"]
COLUMNS = ["path", "output_paths", "client_request_id", "job_id", "request_id", "cost", "error",
           "skipped"]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline; 0 when every photo is done, 1 when some failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="folder (or s3:// prefix) of photos")
    parser.add_argument("target", type=Path, help="folder for the outputs and results.csv")
    parser.add_argument(
        "--run-id", default="ray-enhance", help="rerun with it to pay nothing twice"
    )
    parser.add_argument("--address", help="Ray cluster address (default: a local instance)")
    parser.add_argument("--actors", type=int, default=2, help="actors, each with one client")
    parser.add_argument("--budget", type=float, help="cluster-wide limit in dollars")
    args = parser.parse_args(argv)

    if not ray.is_initialized():
        ray.init(address=args.address)
    args.target.mkdir(parents=True, exist_ok=True)
    governor(args.run_id, budget=args.budget)  # the run's shared pace and budget
    try:
        photos = ray.data.read_binary_files(
            args.source, include_paths=True, file_extensions=SUFFIXES
        )
        results = photos.map_batches(
            PhotaEnhance,
            fn_constructor_kwargs={
                "run_id": args.run_id,
                "api_key": secret(os.environ["PHOTA_API_KEY"]),
                "base_url": os.environ.get("PHOTA_BASE_URL"),
                "out_dir": str(args.target.absolute()),
                "budget": args.budget,
            },
            concurrency=args.actors,
            batch_size=16,
            num_cpus=0.25,  # the actors mostly wait on the network
        )
        done = failed = skipped = 0
        cost = 0.0
        with open(args.target / "results.csv", "w", newline="", encoding="utf-8") as table:
            writer = csv.DictWriter(table, COLUMNS)
            writer.writeheader()
            for row in results.iter_rows():  # streamed: the driver holds one block at a time
                writer.writerow(
                    {c: row[c] for c in COLUMNS} | {"output_paths": " ".join(row["output_paths"])}
                )
                if row["error"]:
                    failed += 1
                elif row["skipped"]:
                    skipped += 1
                else:
                    done += 1
                    cost += row["cost"] or 0.0
    finally:
        close_governor(args.run_id)
    print(f"{done} done, {failed} failed, {skipped} skipped; estimated cost ${cost:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
