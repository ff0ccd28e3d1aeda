"""``python -m bot`` → :func:`bot.cli.main`."""

import sys

from bot.cli import main

sys.exit(main())
