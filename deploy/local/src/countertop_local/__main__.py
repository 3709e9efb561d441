"""``python -m countertop_local <command>``: see ``countertop_local.cli``."""

from countertop_local.cli import main

raise SystemExit(main())
