"""``python -m retrograd``: the same command line as ``retrograd``."""
import sys

from .cli import main

sys.exit(main())
