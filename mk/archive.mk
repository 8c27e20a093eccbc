# Archive targets: the read-back side (bitso_archive). Included by the root Makefile
# (which defines PY and STAMP).
.PHONY: bench-archive

bench-archive: $(STAMP) ## Time load of one book-hour and compare JSON vs Parquet bytes
	$(PY) bench/archive_bench.py
