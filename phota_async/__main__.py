"""``python -m phota_async``: the ``phota`` command line."""

from ._cli import main

raise SystemExit(main())
