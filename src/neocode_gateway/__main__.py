"""``python -m neocode_gateway`` is the same as the ``neocode-gateway`` command."""

import sys

from neocode_gateway.cli import main

if __name__ == "__main__":
    sys.exit(main())
