"""Asyncio-first SDK for the Phota identity-preserving image API.

```python
from pathlib import Path

from phota_async import PhotaClient

# The API key comes from PHOTA_API_KEY in the environment.
async with PhotaClient() as phota:
    result = await phota.enhance(Path("dark.jpg"))
    await result.save("out/")
```
"""

from ._batch import BatchItem, BatchProgress, BatchRun, BatchSummary
from ._budget import Budget, EndpointSpend, Estimate, Prices, Spend
from ._client import PhotaClient
from ._jobs import Jobs
from ._limiter import LaneStats, ThrottleStats
from ._manifest import Manifest
from ._options import (
    AspectRatio,
    EditOptions,
    EnhanceOptions,
    GenerateOptions,
    ImageCount,
    ImageInput,
    Model,
    OutputFormat,
    PILImage,
    ProfileIds,
    Quality,
    RemixOptions,
    Resolution,
    ResponseMode,
    TrainingTier,
)
from ._poll import Cadence, PollPolicy
from ._profiles import Profiles
from ._retry import RetryPolicy, set_testing
from ._transport import AiohttpTransport, MockTransport, Transport
from ._uploads import PresignedPutUploader, Uploader, emulator_uploader
from ._version import __version__
from .errors import (
    APIError,
    BudgetExceededError,
    InvalidRequestError,
    JobFailedError,
    OutcomeUnknownError,
    PhotaError,
    ProfileTrainingError,
    RateLimitError,
    ResponseTooLargeError,
    WaitTimeoutError,
)
from .models import ImageResult, Job, JobStatus, OutputImage, Profile, ProfileStatus

__all__ = [
    "APIError",
    "AiohttpTransport",
    "AspectRatio",
    "BatchItem",
    "BatchProgress",
    "BatchRun",
    "BatchSummary",
    "Budget",
    "BudgetExceededError",
    "Cadence",
    "EditOptions",
    "EndpointSpend",
    "EnhanceOptions",
    "Estimate",
    "GenerateOptions",
    "ImageCount",
    "ImageInput",
    "ImageResult",
    "InvalidRequestError",
    "Job",
    "JobFailedError",
    "JobStatus",
    "Jobs",
    "LaneStats",
    "Manifest",
    "MockTransport",
    "Model",
    "OutcomeUnknownError",
    "OutputFormat",
    "OutputImage",
    "PILImage",
    "PhotaClient",
    "PhotaError",
    "PollPolicy",
    "PresignedPutUploader",
    "Prices",
    "Profile",
    "ProfileIds",
    "ProfileStatus",
    "ProfileTrainingError",
    "Profiles",
    "Quality",
    "RateLimitError",
    "RemixOptions",
    "Resolution",
    "ResponseMode",
    "ResponseTooLargeError",
    "RetryPolicy",
    "Spend",
    "ThrottleStats",
    "TrainingTier",
    "Transport",
    "Uploader",
    "WaitTimeoutError",
    "__version__",
    "emulator_uploader",
    "set_testing",
]

# Public names say where users import them from (as httpx does): reprs, tracebacks and
# ``help()`` show ``phota_async.PhotaClient``, not the private module that defines it.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) or callable(_value):
        _value.__module__ = "phota_async"
del _name, _value
