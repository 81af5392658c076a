"""python -m sonoguide: the same as the sonoguide command."""

from sonoguide.cli import main

raise SystemExit(main())
