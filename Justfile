# Developer and CI entry points. `./setup.sh` makes .venv (with `just` inside) first.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv/bin"
export PATH := venv + ":" + env_var("PATH")

# List the recipes.
default:
    @just --list

# Simulator + engine (paper, offline) as supervised child processes; Ctrl-C stops all.
run *ARGS:
    appliance run {{ARGS}}

# Lint, type-check, then the whole test suite (installs Debian's Chromium for the browser tests).
test *ARGS: lint
    scripts/install-browser.sh
    pytest -q -rs {{ARGS}}

# ruff (lint, then the format check) and mypy --strict on app/.
lint:
    ruff check app tests benchmarks scripts
    ruff format --check app tests benchmarks scripts
    mypy

ref := "../shared/reference/market-data/usdm_2021-07-22"
replay := "--replay " + ref + "_ws.jsonl --snapshots " + ref + "_rest_depth_snapshots.txt --exchange-info " + ref + "_exchangeInfo.txt"

# Decode, indicators, ingestion + recording, inference, then the whole decision loop at bar closes
# and on every message (medians of 3 runs, pinned to core 1).
# Benchmarks that print figures.
bench:
    python benchmarks/decode_bench.py
    python benchmarks/ingest_bench.py
    python benchmarks/indicators_bench.py
    python benchmarks/inference_bench.py
    taskset -c 1 appliance bench {{replay}} --repeat 3
    taskset -c 1 appliance bench {{replay}} --repeat 3 --decide event

# Debian trixie's Python 3.13, numpy and onnxruntime, in the chroot `just test-trixie` uses (root).
# The decision-loop benchmark on the appliance's own stack.
bench-trixie:
    taskset -c 1 scripts/trixie-chroot.sh --run python3 -m app.cli bench {{replay}} --repeat 3

# Mutation testing (mutmut) over the money-path modules in pyproject's [tool.mutmut]; reruns
# mutate only what changed. `just mutate "app.engine.risk*"` narrows it; `mutmut browse` explains.
# mutmut's cache (mutants/) does not notice a module added to only_mutate, so a change of the
# [tool.mutmut] section starts it afresh. One child by default (MUTATE_CHILDREN): 2 shared cores.
mutate *ARGS:
    cfg=$(python -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["tool"]["mutmut"])' | sha256sum | cut -c1-16); \
    if [ "$(cat mutants/.tool-mutmut 2>/dev/null)" != "$cfg" ]; then rm -rf mutants; mkdir mutants; echo "$cfg" > mutants/.tool-mutmut; fi
    APPLIANCE_NATIVE=0 APPLIANCE_REFERENCE_DIR={{justfile_directory()}}/../shared/reference mutmut run --max-children {{env_var_or_default("MUTATE_CHILDREN", "1")}} {{ARGS}}
    mutmut results
    python -m tests.mutation_score

# The exchange simulator alone.
sim *ARGS:
    appliance sim {{ARGS}}

# Send a control command to the running engine, e.g. `just ctl status`.
ctl *ARGS:
    appliance ctl {{ARGS}}

# The test suite on Debian trixie's own packages (Python 3.13 and its numpy, onnxruntime, ...) in a
# debootstrapped chroot cached under /var/cache/appliance (root; about 2 minutes the first time).
[positional-arguments]
test-trixie *ARGS:
    scripts/trixie-chroot.sh "$@"

# The appliance image (root). APPLIANCE_IMAGE_PROFILE: trixie,ci (default) | trixie | noble-rv2.
image *ARGS:
    scripts/image-build.sh {{ARGS}}

# Boot the CI image in qemu-system-riscv64 (TCG) and run its checks (builds it if missing).
image-test:
    scripts/image-test.sh

# Write the image to a whole disk, after refusals and a typed confirmation.
flash DEVICE *ARGS:
    scripts/image-flash.sh {{ARGS}} {{DEVICE}}
