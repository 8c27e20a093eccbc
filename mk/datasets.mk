# The research tables' benchmark (bench/datasets_bench.py): export and compact of one book-hour
# of 200,000 diffs, their bytes against the raw stream objects and zstd -19, and a year of
# book_snapshots queried in DuckDB. Included by the root Makefile (which defines PY and STAMP);
# `make bench` runs it too (mk/bench.mk).
.PHONY: bench-datasets

bench-datasets: $(STAMP) ## Export a book-hour of 200,000 diffs: time, memory, bytes, DuckDB
	$(PY) bench/datasets_bench.py
