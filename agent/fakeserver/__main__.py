"""``python -m cl_metadata.fakeserver``: the same as ``cl-metadata-fake-server``."""

import sys

from .cli import main

sys.exit(main())
