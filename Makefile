# Thin wrapper over meson: set-up, build, run, test, bench.
BUILD ?= build
MESON_OPTS ?=

.PHONY: all deps configure build run test bench clean

all: build

deps:
	@sh tools/install-deps.sh

$(BUILD)/build.ninja:
	@$(MAKE) --no-print-directory deps
	meson setup $(BUILD) $(MESON_OPTS)

configure: $(BUILD)/build.ninja

build: configure
	ninja -C $(BUILD)

run: build
	./$(BUILD)/eddy examples/tour.lua

test: build
	sh tools/run-tests.sh $(BUILD)

bench: build
	@sh tools/install-deps.sh bench
	../shared/bench/run.sh --eddy $(BUILD)/eddy --eddy-scripts bench/eddy

clean:
	rm -rf $(BUILD)
