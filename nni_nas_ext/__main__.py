"""``python -m nni_nas_ext``: see :mod:`nni_nas_ext.cli`."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
