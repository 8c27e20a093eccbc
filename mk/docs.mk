# make docs: the pages in docs/ as a site in site/, with MkDocs (Material theme) in strict mode, so a
# broken link or anchor, or a page left out of mkdocs.yml's nav, fails. Included by the root
# Makefile (which defines BIN and STAMP); `make test` runs it.
.PHONY: docs

docs: $(STAMP) ## Build the docs into site/ (MkDocs, strict: broken links and pages outside the nav fail)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
