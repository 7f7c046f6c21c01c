"""`python -m ghostrt.cli`: the same command as the `ghostrt` script."""

import sys

from ghostrt.cli import main

sys.exit(main())
