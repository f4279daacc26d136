"""Allow ``python -m nodecluster``."""

from nodecluster.cli import main

raise SystemExit(main())
