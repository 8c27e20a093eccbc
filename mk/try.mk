# make try: collect a few minutes offline (the fake Bitso, the real bitso-collect) into try-data/,
# kept across runs, then print the reader's commands for them. Included by the root Makefile
# (which defines PY and STAMP).
.PHONY: try

MINUTES ?= 2

try: $(STAMP) ## Offline: collect MINUTES (2) minutes from the fake Bitso into try-data/; how to read them
	$(PY) demo/try_it.py --minutes $(MINUTES)
