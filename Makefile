# Thin wrapper over CMake. `make demo` and `make test` are the two commands of
# the README's quick start; both install what is missing first.
BUILD_DIR ?= build
ASAN_BUILD_DIR ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

# Let ccache share its cache between clones of the repository (CI builds a
# fresh clone): hash paths relative to the clone, and not the build dir.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1

.PHONY: all deps build demo test test-asan test-durable-long bench package clean

all: build

deps:
	@./scripts/install-deps.sh

$(BUILD_DIR)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	./$(BUILD_DIR)/examples/order_desk/order_desk
	@echo
	./$(BUILD_DIR)/examples/local_office/local_office
	@echo
	./$(BUILD_DIR)/tools/courier up -d examples/deploy/system.toml
	./$(BUILD_DIR)/tools/courier ps examples/deploy/system.toml
	./$(BUILD_DIR)/tools/courier --dir /tmp/courier-office-deploy stats \
	  front-office
	./$(BUILD_DIR)/tools/courier down examples/deploy/system.toml
	@echo
	@# The cluster as a system file, where network namespaces can be made.
	@if [ "$$(id -u)" = 0 ] && command -v ip >/dev/null && [ -x /usr/bin/etcd ]; then \
	  set -e; d=/tmp/courier-cluster-deploy; \
	  ./$(BUILD_DIR)/examples/cluster/cluster --hosts up $$d; \
	  trap './$(BUILD_DIR)/tools/courier down examples/deploy/cluster.toml; \
	        ./$(BUILD_DIR)/examples/cluster/cluster --hosts down '$$d EXIT; \
	  ./$(BUILD_DIR)/tools/courier up -d examples/deploy/cluster.toml; \
	  ./$(BUILD_DIR)/tools/courier ps examples/deploy/cluster.toml; \
	  ./$(BUILD_DIR)/examples/cluster/cluster --ask $$d; \
	else echo "cluster.toml: skipped (needs root, ip and etcd)"; fi
	@echo
	./$(BUILD_DIR)/examples/polyglot/polyglot examples/polyglot/client.py \
	  $(BUILD_DIR)/examples/polyglot/python ./$(BUILD_DIR)/tools/courier
	@echo
	./$(BUILD_DIR)/examples/cluster/cluster
	@echo
	./$(BUILD_DIR)/examples/durable_orders/durable_orders

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 120

# The durable tests with ten times the SIGKILL cycles and crash points
# (200 kills of the receiving node, 200 of the senders) and a 30 s
# partition between hosts besides the 5 s one; the PR-sized runs are part
# of `make test`. The test binaries run directly: their ctest entries have
# a 60 s limit.
test-durable-long: build
	cd $(BUILD_DIR) && COURIER_DURABLE_LONG=1 ctest --output-on-failure \
	  -R '^durable: ' --timeout 600
	COURIER_DURABLE_LONG=1 ./$(BUILD_DIR)/tests/durable/courier_durable_node_tests
	COURIER_DURABLE_LONG=1 ./$(BUILD_DIR)/tests/courier_integration_tests \
	  '[durable]'

$(ASAN_BUILD_DIR)/CMakeCache.txt: | deps
	cmake -S . -B $(ASAN_BUILD_DIR) -DCMAKE_BUILD_TYPE=Debug \
	  -DCOURIER_SANITIZE=ON -DCOURIER_BUILD_BENCH=OFF $(CMAKE_FLAGS)

test-asan: deps $(ASAN_BUILD_DIR)/CMakeCache.txt
	cmake --build $(ASAN_BUILD_DIR) -j $(JOBS)
	cd $(ASAN_BUILD_DIR) && ASAN_OPTIONS=detect_leaks=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) --timeout 300

bench: build
	./$(BUILD_DIR)/bench/courier_bench_inproc

# The Debian package of cmake/CourierInstall.cmake, written to the build
# folder: sudo apt install ./$(BUILD_DIR)/courier-actors_*.deb
package: build
	cd $(BUILD_DIR) && cpack -G DEB

clean:
	rm -rf $(BUILD_DIR) $(ASAN_BUILD_DIR)
