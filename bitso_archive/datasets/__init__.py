"""Research tables from the archive: ``trades``, ``book_changes``, ``book_snapshots``, ``quotes``
and ``coverage``, one Parquet file per table, book and hour (see docs/datasets.md).

``export`` writes them for any range into a directory; ``compact`` (and the hourly
``compact_hour`` function) writes them for each ended hour into the archive, by the same code
(:mod:`bitso_archive.datasets.build`). Everything reads the archive through
:mod:`bitso_archive.datasets.source_adapter` alone.
"""
