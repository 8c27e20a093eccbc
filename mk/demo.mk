# make demo: the whole cloud path offline (fake Bitso, GCS emulator, the real function server).
# Included by the root Makefile (which defines PY, BIN and STAMP).
.PHONY: demo

demo: $(STAMP) ## Offline: 10 s into a local GCS emulator via the real function; show what landed
	$(PY) demo/run_demo.py
