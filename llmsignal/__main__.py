"""``python -m llmsignal``: the same command line as ``llmsignal``."""

import sys

from llmsignal.cli import main

sys.exit(main())
