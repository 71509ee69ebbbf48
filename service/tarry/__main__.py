"""`python -m tarry ...`: the same as the `tarry` command."""

from tarry.cli import main

raise SystemExit(main())
