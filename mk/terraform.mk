# Terraform targets: plan, deploy, destroy, tf-fmt, checkov, tf-lint.
# Included by the root Makefile (which defines VENV, BIN and STAMP).
TF_DIR := infra/terraform
TERRAFORM ?= terraform
TF := CHECKPOINT_DISABLE=1 $(TERRAFORM) -chdir=$(TF_DIR)
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

.PHONY: plan deploy destroy tf-init tf-check tf-fmt tf-fmt-if-found checkov tf-lint

tf-check:
	@command -v $(TERRAFORM) >/dev/null 2>&1 || { \
	  echo "error: '$(TERRAFORM)' not found on PATH; install Terraform >= 1.5 (https://developer.hashicorp.com/terraform/install)" >&2; \
	  exit 1; }

tf-init: tf-check
	$(TF) init -input=false

plan: tf-init ## Show what terraform apply would change (infra/terraform)
	$(TF) plan

deploy: tf-init ## terraform apply: deploy the collector to Google Cloud
	$(TF) apply

destroy: tf-init ## terraform destroy: remove everything deploy created
	$(TF) destroy

tf-fmt: tf-check ## Check the formatting of the Terraform files
	CHECKPOINT_DISABLE=1 $(TERRAFORM) fmt -check -recursive -diff $(TF_DIR)

$(CHECKOV_STAMP):
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==3.3.30
	touch $@

checkov: $(CHECKOV_STAMP) ## Scan the Terraform with checkov (fails on any failed check)
	$(CHECKOV_VENV)/bin/checkov -d $(TF_DIR) --framework terraform --skip-download --quiet --compact

# `make lint` (and so `make test`) checks the formatting whenever terraform is found; CI
# (CI=true) requires it.
tf-fmt-if-found:
	@if command -v $(TERRAFORM) >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory tf-fmt; \
	elif [ "$$CI" = "true" ]; then \
	  echo "error: '$(TERRAFORM)' not found on PATH; CI checks the Terraform formatting (install Terraform >= 1.5)" >&2; \
	  exit 1; \
	else \
	  echo "note: '$(TERRAFORM)' not found, so the Terraform formatting check was skipped (make tf-fmt runs it)"; \
	fi

tf-lint: tf-fmt-if-found checkov ## terraform fmt -check (when terraform is found; always in CI) and checkov
