# suppressd build.
#
#   make            release binary bin/suppressd (-O2, -Werror)
#   make asan       bin/suppressd-asan: AddressSanitizer + UndefinedBehaviorSanitizer
#   make test       unit tests (cmocka) and system tests (real binary, real redis-server),
#                   all under ASan/UBSan; ends with "N passed, M failed"
#   make run        the service on an embedded default (local redis-server under ./var)
#   make demo       replays signed Intercom deliveries into `make run` and prints user states
#   make valgrind   unit tests and a system smoke test under valgrind
#
# User CFLAGS are appended after the warning flags, so they can add but never remove
# warnings (WARN is not overridable from the command line).

PKGS    := hiredis libevent libevent_pthreads libcurl jansson libcrypto
CC      ?= cc
STD     := -std=c11 -D_GNU_SOURCE
override WARN := -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes -Wshadow \
           -Wpointer-arith -Wcast-qual -Wwrite-strings -Wno-missing-field-initializers
OPT     ?= -O2 -g
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS)) -lpthread -lm
INCS    := -I. -Ibuild/gen
SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

REL_CFLAGS  = $(STD) $(WARN) $(OPT) $(INCS) $(PKG_CFLAGS) $(CFLAGS) -MMD -MP
ASAN_CFLAGS = $(STD) $(WARN) -O1 -g $(SAN) $(INCS) $(PKG_CFLAGS) $(CFLAGS) -MMD -MP

LUA_SRCS  := $(sort $(wildcard state/lua/*.lua))
LIB_SRCS  := $(sort $(filter-out svc/svc_main.c,$(wildcard svc/*.c state/*.c api/*.c)))
GEN_SRCS  := build/gen/state_lua.c
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))

REL_OBJS   := $(patsubst %.c,build/rel/%.o,$(LIB_SRCS) $(GEN_SRCS))
ASAN_OBJS  := $(patsubst %.c,build/asan/%.o,$(LIB_SRCS) $(GEN_SRCS))
UNIT_BINS  := $(patsubst tests/unit/%.c,build/asan/tests/%,$(UNIT_SRCS))
UNIT_BINS_REL := $(patsubst tests/unit/%.c,build/rel/tests/%,$(UNIT_SRCS))

PYTHON  ?= /usr/bin/python3

# Quiet output unless V=1 (Redis's QUIET_CC habit).
ifeq ($(V),1)
Q :=
say = @true
else
Q := @
say = @printf '    %-6s %s\n' $(1) $(2)
endif

.PHONY: all asan test unit system run demo valgrind bench clean scale-test deps
all: bin/suppressd

bin/suppressd: build/rel/svc/svc_main.o $(REL_OBJS)
	@mkdir -p bin
	$(call say,LINK,$@)
	$(Q)$(CC) $(OPT) -o $@ $^ $(PKG_LIBS) $(LDFLAGS)

asan: bin/suppressd-asan
bin/suppressd-asan: build/asan/svc/svc_main.o $(ASAN_OBJS)
	@mkdir -p bin
	$(call say,LINK,$@)
	$(Q)$(CC) $(SAN) -o $@ $^ $(PKG_LIBS) $(LDFLAGS)

# Lua scripts are embedded as C strings so the binary needs no files at run time.
build/gen/state_lua.c: $(LUA_SRCS) state/lua/embed.sh
	@mkdir -p build/gen
	$(call say,EMBED,$@)
	$(Q)sh state/lua/embed.sh $(LUA_SRCS) > $@.tmp && mv $@.tmp $@

build/rel/%.o: %.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(REL_CFLAGS) -c $< -o $@

build/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(call say,CC-SAN,$<)
	$(Q)$(CC) $(ASAN_CFLAGS) -c $< -o $@

build/asan/tests/%: tests/unit/%.c $(ASAN_OBJS)
	@mkdir -p $(dir $@)
	$(call say,TEST,$@)
	$(Q)$(CC) $(ASAN_CFLAGS) -o $@ $< $(ASAN_OBJS) $(PKG_LIBS) $(shell pkg-config --libs cmocka)

build/rel/tests/%: tests/unit/%.c $(REL_OBJS)
	@mkdir -p $(dir $@)
	$(call say,TEST,$@)
	$(Q)$(CC) $(REL_CFLAGS) -o $@ $< $(REL_OBJS) $(PKG_LIBS) $(shell pkg-config --libs cmocka)

unit: $(UNIT_BINS)
unit-rel: $(UNIT_BINS_REL)

# Missing Debian packages are installed first (tests/tools/deps.sh); the build then runs
# in a sub-make so pkg-config sees the freshly installed libraries.
deps:
	@sh tests/tools/deps.sh $(DEPS_FLAGS)

# Everything CI runs. tests/run.sh prints the final "N passed, M failed" line.
test: DEPS_FLAGS = --test
test: deps
	@$(MAKE) --no-print-directory -j2 bin/suppressd bin/suppressd-asan unit \
		$(UNIT_BINS_REL)
	@sh tests/run.sh

# The service on an embedded default: a private redis-server under ./var when REDIS_URL
# is unset, a demo Intercom secret, Customer.io and Intercom in dry run.
run: deps
	@$(MAKE) --no-print-directory bin/suppressd
	@sh tests/tools/run.sh

demo:
	@$(PYTHON) tests/tools/demo.py

valgrind: bin/suppressd $(UNIT_BINS_REL)
	@sh tests/valgrind.sh

# Benchmarks (bench/run.sh; figures land in bench/RESULTS.md and bench/latency.png).
# bench/ceiling.c is a bare evhttp server shaped like suppressd's HTTP side: the ceiling
# the query path is compared with.
BENCH_CEILING := build/bench/ceiling
$(BENCH_CEILING): bench/ceiling.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(STD) $(WARN) -O2 -g $(shell pkg-config --cflags libevent) $(CFLAGS) -o $@ $< \
		$(shell pkg-config --libs libevent) -lpthread $(LDFLAGS)

bench: DEPS_FLAGS = --bench
bench: deps
	@$(MAKE) --no-print-directory bin/suppressd $(BENCH_CEILING)
	@sh bench/run.sh

# Three release replicas behind haproxy, one Redis, one Customer.io simulator; one
# replica SIGKILLed and one drained and restarted under load (tests/scale).
scale-test: DEPS_FLAGS = --scale
scale-test: deps
	@$(MAKE) --no-print-directory bin/suppressd
	@SUPPRESSD_BIN=$(CURDIR)/bin/suppressd $(PYTHON) -m pytest -q -p no:cacheprovider tests/scale

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
