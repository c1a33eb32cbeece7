"""`python -m slam <step> …` — same as the `slam` console script."""

from slam.cli import main

raise SystemExit(main())
