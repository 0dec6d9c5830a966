"""``python -m frl.cli ...`` (and ``torchrun ... -m frl.cli train ...``)."""

import sys

from frl.cli import main

sys.exit(main())
