"""``python -m cmim_hf.cli ...`` is the ``cmim`` command."""

import sys

from cmim_hf.cli import main

if __name__ == "__main__":
    sys.exit(main())
