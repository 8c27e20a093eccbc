# CPU share benchmark: the real function under a cgroup CPU quota of 0.333, 0.167 and 0.083
# vCPU, one real minute per row (see docs/benchmarks.md). Included by the root Makefile (which defines
# PY and STAMP); `make bench` runs it too (mk/bench.mk).
.PHONY: bench-cpu

bench-cpu: $(STAMP) ## Run the real function under CPU quotas (cgroups; skipped where not allowed)
	$(PY) bench/cpu_share_bench.py
