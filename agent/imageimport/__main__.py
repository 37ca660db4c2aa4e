"""``python3 -m cl_metadata.imageimport`` is ``cl-metadata-import-image``."""

import sys

from cl_metadata.imageimport.cli import main

sys.exit(main())
