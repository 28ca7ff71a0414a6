"""Asyncio-first SDK for the Phota identity-preserving image API.

```python
from phota_async import PhotaClient

async with PhotaClient() as phota:            # PHOTA_API_KEY from the environment
    result = await phota.enhance(Path("dark.jpg"))
    await result.save("out/")
```
"""

__version__ = "0.1.0"

from ._client import PhotaClient, Profiles
from ._retry import RetryPolicy, set_testing
from ._transport import AiohttpTransport, MockTransport, Transport
from .errors import (
    APIError,
    InvalidRequestError,
    JobFailedError,
    OutcomeUnknownError,
    PhotaError,
    ProfileTrainingError,
    RateLimitError,
    WaitTimeoutError,
)
from .models import ImageResult, Job, JobStatus, OutputImage, Profile, ProfileStatus

__all__ = [
    "APIError",
    "AiohttpTransport",
    "ImageResult",
    "InvalidRequestError",
    "Job",
    "JobFailedError",
    "JobStatus",
    "MockTransport",
    "OutcomeUnknownError",
    "OutputImage",
    "PhotaClient",
    "PhotaError",
    "Profile",
    "ProfileStatus",
    "ProfileTrainingError",
    "Profiles",
    "RateLimitError",
    "RetryPolicy",
    "Transport",
    "WaitTimeoutError",
    "__version__",
    "set_testing",
]
