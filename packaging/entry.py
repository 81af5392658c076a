"""The desktop bundle's entry point: the same as the `sonoguide` command."""

from sonoguide.cli import main

raise SystemExit(main())
