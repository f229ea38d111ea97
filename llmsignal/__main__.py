"""``python -m llmsignal``: the same command line as ``llmsignal``."""

import sys

try:
    from llmsignal.cli import main
except ModuleNotFoundError as missing:  # the repo's folder, found by a Python that llmsignal is not installed in
    print(f"llmsignal: error: this Python ({sys.executable}) has no installed llmsignal ({missing}); run `make run` "
          "once, then `.venv/bin/llmsignal` or `.venv/bin/python -m llmsignal`", file=sys.stderr)
    sys.exit(2)

sys.exit(main())
