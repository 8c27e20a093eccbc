"""``python -m bitso_archive``."""

from bitso_archive.cli import main

raise SystemExit(main())
