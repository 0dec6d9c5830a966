"""``python -m frl.cli ...`` (and ``torchrun ... -m frl.cli train ...``)."""

import sys

from frl.cli import main

if __name__ == "__main__":  # importing the module (a documentation build) runs nothing
    sys.exit(main())
