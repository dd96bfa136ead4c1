# Thin wrapper over meson: set-up, build, run, test, bench.
BUILD ?= build
MESON_OPTS ?=

.PHONY: all deps configure build run test tsan bench clean

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

# ThreadSanitizer (docs/testing.md; not in CI): the specs of the threaded
# parts and the other suites on build-tsan/; any report fails the run.
TSAN_SPECS = spec/executor_spec.lua spec/loop_spec.lua spec/dns_spec.lua \
  spec/runners_spec.lua spec/task_spec.lua
TSAN_REPORTS = $(CURDIR)/build-tsan/tsan-reports

tsan:
	@$(MAKE) --no-print-directory build BUILD=build-tsan \
	  MESON_OPTS="-Db_sanitize=thread -Db_lundef=false -Dbuildtype=debugoptimized"
	rm -rf $(TSAN_REPORTS) && mkdir $(TSAN_REPORTS)
	TSAN_OPTIONS="suppressions=$(CURDIR)/tools/tsan.supp second_deadlock_stack=1 log_path=$(TSAN_REPORTS)/report" \
	  SPECS="$(TSAN_SPECS)" sh tools/run-tests.sh build-tsan; rc=$$?; \
	  if ls $(TSAN_REPORTS) | grep -q .; then \
	    echo "ThreadSanitizer reports: $(TSAN_REPORTS)"; exit 1; fi; exit $$rc

bench: build
	@sh tools/install-deps.sh bench
	../shared/bench/run.sh --eddy $(BUILD)/eddy --eddy-scripts bench/eddy

clean:
	rm -rf $(BUILD)
