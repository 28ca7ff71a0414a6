"""Batch runs on Ray Data, paying exactly once across a cluster (the ``[ray]`` extra).

```python
import ray
from phota_async.ray import PhotaEnhance

ds = ray.data.read_binary_files("photos/", include_paths=True)
out = ds.map_batches(
    PhotaEnhance,
    fn_constructor_kwargs={"run_id": "nightly-1127", "budget": 50.0},
    concurrency=8, batch_size=16, num_cpus=0.25,
)
out.write_parquet("results/")
```

Each actor opens one ``PhotaClient`` (key and base URL from ``PHOTA_API_KEY`` and
``PHOTA_BASE_URL`` on the worker, or ``api_key=secret(key)``); every row is a job keyed by the
run id and the row's content, so a task Ray retries, or a rerun of the pipeline, pays nothing
twice. One governor actor per run id holds the cluster's pace and budget. Importing
``phota_async`` does not import this module, nor Ray; this module imports Ray only when used.
"""

from ._governor import Governor, governor_name
from ._udf import (
    PhotaEdit,
    PhotaEnhance,
    PhotaGenerate,
    PhotaRemix,
    SecretRef,
    close_governor,
    governor,
    governor_stats,
    secret,
)

__all__ = [
    "Governor",
    "PhotaEdit",
    "PhotaEnhance",
    "PhotaGenerate",
    "PhotaRemix",
    "SecretRef",
    "close_governor",
    "governor",
    "governor_name",
    "governor_stats",
    "secret",
]
