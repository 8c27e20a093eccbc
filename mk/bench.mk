# Collector benchmark: every strategy and the naive baseline under three latency profiles against
# the fake Bitso (see docs/benchmarks.md). Included by the root Makefile, which defines PY and STAMP.
# Also runs the archive benchmark (bench-archive, mk/archive.mk), the CPU share benchmark
# (bench-cpu, mk/cpu_share.mk) and the datasets benchmark (bench-datasets, mk/datasets.mk) when
# present, and the streams benchmark (bench-streams: one real-time minute).
.PHONY: bench-streams

BENCH_ALSO := $(if $(wildcard mk/archive.mk),bench-archive) $(if $(wildcard mk/cpu_share.mk),bench-cpu) \
	$(if $(wildcard mk/datasets.mk),bench-datasets)

bench: $(STAMP) $(BENCH_ALSO) ## Benchmark the strategies against the fake Bitso (Markdown table)
	$(PY) bench/collector_bench.py
	$(PY) bench/stream_bench.py

bench-streams: $(STAMP) ## One real-time minute of streams at 2,000 messages/s across 10 books
	$(PY) bench/stream_bench.py
