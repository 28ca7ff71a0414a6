"""The options of the studio calls, as types: one ``Literal`` per enum of the API and one
``TypedDict`` per endpoint, stated once and used (with ``Unpack``) by the call, its
``jobs.submit_*`` twin and its ``*_many`` twin.

A type checker then catches a wrong model, ratio or count and a misspelt option where it is
written; ``_validate`` refuses the same mistakes at run time, before anything is sent, reading
its lists of valid values from these aliases (once, at import).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import (
    IO,
    Any,
    BinaryIO,
    Literal,
    Protocol,
    TypedDict,
    TypeVar,
    overload,
)

Model = Literal["nb2", "gpt-image-2", "qwen-image-2", "flux-2", "reve"]
"""A ``base_model`` for edit and generate (``nb2`` by default)."""
AspectRatio = Literal["auto", "1:1", "3:4", "4:3", "9:16", "16:9"]
"""An ``aspect_ratio`` for edit and generate (``auto`` by default)."""
Resolution = Literal["1K", "2K", "4K"]
"""A ``resolution`` for edit and generate (``1K`` by default; not every model makes 4K)."""
Quality = Literal["auto", "low", "medium", "high"]
"""A ``quality`` for edit and generate, with ``base_model="gpt-image-2"`` only."""
OutputFormat = Literal["jpg", "png"]
"""An ``output_format`` (the SDK sends ``jpg`` unless told otherwise)."""
ResponseMode = Literal["bytes", "urls"]
"""A ``response_mode``: images inline (``bytes``, the default) or signed download URLs."""
TrainingTier = Literal["standard", "fast"]
"""A profile's training ``tier``: ``standard`` (10-50 photos) or ``fast`` (5-10)."""
ImageCount = Literal[1, 2, 3, 4]
"""How many images one studio call makes (``n``)."""
_T_co = TypeVar("_T_co", covariant=True)


class SequenceNotStr(Protocol[_T_co]):
    """A ``Sequence`` that is not a ``str`` (openai-python's idiom): ``str.__contains__`` takes
    only a ``str``, where this takes any object, so a type checker refuses a string here and
    accepts a list, a tuple or a ``Sequence`` alike."""

    @overload
    def __getitem__(self, index: int, /) -> _T_co: ...
    @overload
    def __getitem__(self, index: slice, /) -> Sequence[_T_co]: ...
    def __contains__(self, value: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[_T_co]: ...
    def index(self, value: Any, start: int = 0, stop: int = ..., /) -> int: ...
    def count(self, value: Any, /) -> int: ...
    def __reversed__(self) -> Iterator[_T_co]: ...


ProfileIds = list[str] | tuple[str, ...] | SequenceNotStr[str]
"""Trained subjects by id: a list, a tuple or any ``Sequence[str]``, but not one id passed
alone as a string (which would be a sequence of one-letter ids): that is a type error. (The
list and tuple come first so that a type checker checks a literal ``[...]`` item by item.)"""


class PILImage(Protocol):
    """What the SDK needs of a Pillow image (``PIL.Image.Image`` fits; Pillow stays optional)."""

    @property
    def size(self) -> tuple[int, int]:
        """Width and height in pixels."""

    @property
    def mode(self) -> str:
        """Pillow's mode, such as ``RGB`` or ``RGBA``."""

    def save(self, fp: IO[bytes], format: str | None = None) -> None:
        """Encode the image into ``fp`` in ``format``."""


ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO | PILImage
"""One image: an http(s) URL string (the server fetches it), a path to a local file, its bytes,
a binary file object (read from where it stands), or a Pillow image."""


class _OutputOptions(TypedDict, total=False):
    n: ImageCount
    output_format: OutputFormat
    response_mode: ResponseMode


class _ModelOptions(TypedDict, total=False):
    aspect_ratio: AspectRatio
    resolution: Resolution
    base_model: Model
    quality: Quality | None


class GenerateOptions(_ModelOptions, _OutputOptions, total=False):
    """The options of ``generate`` and ``jobs.submit_generate``, all optional.

    ``n`` (1-4), ``aspect_ratio``, ``resolution``, ``base_model``, ``quality``
    (``gpt-image-2`` only), ``output_format`` and ``response_mode``. Generate takes no
    ``profile_ids``: name each subject in the prompt as ``[[profile_id]]``.
    """


class EditOptions(GenerateOptions, total=False):
    """The options of ``edit``, ``jobs.submit_edit`` and ``edit_many``, all optional.

    Those of ``GenerateOptions``, plus ``profile_ids``: trained subjects to apply (merged with
    the prompt's ``[[profile_id]]`` tokens).
    """

    profile_ids: ProfileIds | None


class EnhanceOptions(_OutputOptions, total=False):
    """The options of ``enhance``, ``jobs.submit_enhance`` and ``enhance_many``, all optional.

    ``profile_ids`` (trained subjects in the photo), ``prompt`` (optional guidance), ``n``
    (1-4), ``output_format`` and ``response_mode``.
    """

    profile_ids: ProfileIds | None
    prompt: str | None


class RemixOptions(EnhanceOptions, total=False):
    """The options of ``remix``, ``jobs.submit_remix`` and ``remix_many``, all optional: the
    same as ``EnhanceOptions`` (remix makes 2K images in the input's aspect ratio)."""
