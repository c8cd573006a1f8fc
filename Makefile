# cim: one non-recursive Makefile; everything builds into $(BUILD).
#   make                  build msg_gate, msg_logic, cim (console), cim-bench, tests
#   make run / stop       local stack (deploy/stack.sh)
#   make test             ASan+UBSan build in build/asan, unit + end-to-end tests
#   make test-valgrind    plain build in build/vg, unit + core end-to-end tests under valgrind
#   make lint / format    clang-format, cppcheck
# Overridable: BUILD, OPTIMIZATION, WERROR, SANITIZER (address), CC, TEST_PREFIX.

BUILD        ?= build
OPTIMIZATION ?= -O2
WERROR       ?= 1
SANITIZER    ?=
CC           ?= cc

PKGS := libuv libprotobuf-c hiredis libmariadb libsodium libmicrohttpd jansson libcurl libssl libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
        -Wwrite-strings -Wpointer-arith -Wvla -Wno-missing-field-initializers
ifeq ($(WERROR),1)
WARN += -Werror
endif

ifeq ($(SANITIZER),address)
OPTIMIZATION := -Og
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

CFLAGS  := -std=gnu11 -g $(OPTIMIZATION) $(WARN) $(SAN) -MMD -MP -I common -I $(BUILD)/gen \
           $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(SAN) $(EXTRA_LDFLAGS)
LIBS    := $(PKG_LIBS) -lnanomsg -lwslay -lpthread -lm

GEN := $(BUILD)/gen/proto
PROTO_SRC := $(GEN)/cim.pb-c.c $(GEN)/internal.pb-c.c
PROTO_OBJ := $(PROTO_SRC:.c=.o)

COMMON_SRC := $(wildcard common/*.c)
GATE_SRC   := $(wildcard gate/*.c)
LOGIC_SRC  := $(wildcard logic/*.c)
LIBCIM_SRC := $(wildcard client/libcim*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
E2E_SRC    := $(wildcard tests/e2e/e2e_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
COMMON_OBJ := $(call obj,$(COMMON_SRC)) $(PROTO_OBJ)
LIBCIM_OBJ := $(call obj,$(LIBCIM_SRC))

BINS := $(BUILD)/msg_gate $(BUILD)/msg_logic $(BUILD)/cim
ifneq ($(wildcard client/cim_bench.c),)
BINS += $(BUILD)/cim-bench
endif
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
E2E_BINS  := $(patsubst tests/e2e/%.c,$(BUILD)/tests/%,$(E2E_SRC))

.SECONDARY:
.PHONY: all bins tests deps run stop test test-unit test-e2e test-valgrind test-multihost bench lint \
        format clean fuzz fuzz-short chaos
all: bins tests
bins: $(BINS)
tests: $(UNIT_BINS) $(E2E_BINS)

# generated protobuf code: never edited, never committed
$(GEN)/%.pb-c.c $(GEN)/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen $<

$(GEN)/%.o: $(GEN)/%.c
	$(CC) -std=gnu11 -g $(OPTIMIZATION) $(SAN) -MMD -MP -I $(BUILD)/gen $(PKG_CFLAGS) -c $< -o $@

# every object depends on the generated headers existing
$(BUILD)/obj/%.o: %.c | $(GEN)/cim.pb-c.h $(GEN)/internal.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/msg_gate: $(call obj,$(GATE_SRC)) $(COMMON_OBJ)
	$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

$(BUILD)/msg_logic: $(call obj,$(LOGIC_SRC)) $(COMMON_OBJ)
	$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

$(BUILD)/libcim.a: $(LIBCIM_OBJ) $(COMMON_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/cim: $(BUILD)/obj/client/cim.o $(BUILD)/libcim.a
	$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

$(BUILD)/cim-bench: $(BUILD)/obj/client/cim_bench.o $(BUILD)/libcim.a
	$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

# unit tests link the common objects; logic/gate modules they test are named in tests/unit/deps
$(BUILD)/tests/test_%: $(BUILD)/obj/tests/unit/test_%.o $(COMMON_OBJ) $(BUILD)/libcim.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

$(BUILD)/tests/e2e_%: $(BUILD)/obj/tests/e2e/e2e_%.o $(BUILD)/libcim.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

deps:
	@bash deploy/install-deps.sh

run: deps
	@$(MAKE) --no-print-directory bins
	@bash deploy/stack.sh start

stop:
	@bash deploy/stack.sh stop

# make test: sanitizer build in its own directory, then the whole suite
test: deps
	@$(MAKE) --no-print-directory BUILD=build/asan SANITIZER=address all
	@BIN=build/asan bash tests/run.sh all

test-unit:
	@$(MAKE) --no-print-directory BUILD=build/asan SANITIZER=address all
	@BIN=build/asan bash tests/run.sh unit

test-valgrind: deps
	@$(MAKE) --no-print-directory BUILD=build/vg OPTIMIZATION=-O1 all
	@BIN=build/vg VALGRIND=1 bash tests/run.sh core

# several hosts in network namespaces (root), and the compose file's validation
test-multihost: deps
	@$(MAKE) --no-print-directory bins
	@BIN=build bash tests/multihost/test_compose.sh
	@BIN=build bash tests/multihost/run.sh

# the chaos suite at full length (faults: logic/gate kill -9, Redis wiped, MariaDB and one
# shard stopped, logic paused); `make test` runs the short version
chaos: deps
	@$(MAKE) --no-print-directory BUILD=build/asan SANITIZER=address all
	@CHAOS_LONG=1 BIN=build/asan bash tests/chaos/run.sh

# libFuzzer targets (tests/fuzz/), 600 s each; with the CIM_* variables of a running stack
# exported it also fuzzes that stack over the network. `make test` runs the short version.
fuzz:
	@bash tests/fuzz/run.sh long

fuzz-short:
	@bash tests/fuzz/run.sh short

bench: deps
	@$(MAKE) --no-print-directory bins
	@if [ -x bench/run.sh ]; then bash bench/run.sh; else echo "bench: no scenarios yet (issue 7)"; fi

lint:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')
	cppcheck --quiet --enable=warning,performance,portability --error-exitcode=1 \
	  --suppress=missingIncludeSystem -I common common gate logic client

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
