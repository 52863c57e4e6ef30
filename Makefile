# pagerduty — PGXS build.  `make test` and `make demo` work on a fresh
# Debian 12 machine: they install what is missing first (see test/run.sh).

EXTENSION = pagerduty
MODULE_big = pagerduty
OBJS = \
	src/pagerduty.o \
	src/settings.o \
	src/payload.o \
	src/service.o \
	src/outbox.o \
	src/sql_api.o \
	src/alert.o \
	src/keys.o \
	src/http.o \
	src/worker.o \
	src/launcher.o
DATA = sql/pagerduty--1.0.sql
PGFILEDESC = "pagerduty - PagerDuty Events API v2 from PostgreSQL"

# pg_regress runs on its own temporary server with the library preloaded;
# the TAP tests (test/t/*.pl) start their own clusters and Events API stand-in.
REGRESS = payload enqueue errors security integrations
REGRESS_OPTS = --temp-instance=./tmp_regress --temp-config=$(srcdir)/test/regress.conf
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

# -Wextra, less what PostgreSQL's own headers and conventions trip: unused
# fcinfo parameters, partial struct initializers, and -Wclobbered, which
# warns about PG_TRY's own _do_rethrow ("just about entirely useless", says
# utils/elog.h; variables changed inside PG_TRY are declared volatile here).
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
	-Wno-sign-compare -Wno-clobbered
SHLIB_LINK = -lcurl

# The tests target PostgreSQL 15 (Debian 12); prefer its pg_config.
PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
PG_PROVE_FLAGS += -I $(srcdir)/test
else
all install installcheck:
	@echo "PostgreSQL's PGXS was not found: run 'make test' as root, or install postgresql-server-dev-15" >&2
	@exit 1
endif

.PHONY: test demo bench deps

# Install what is missing (as root), build, install, then run pg_regress and
# the TAP tests as an unprivileged user.  Exits non-zero if anything fails.
test:
	@$(srcdir)/test/run.sh test

# A throwaway cluster, the Events API stand-in (or the real PagerDuty with
# PAGERDUTY_ROUTING_KEY set), an error-log table with an alert trigger.
demo:
	@$(srcdir)/test/run.sh demo

# Enqueue cost, drain rate and commit-to-arrival latency, with baselines.
bench:
	@$(srcdir)/test/run.sh bench

deps:
	@$(srcdir)/test/deps.sh

EXTRA_CLEAN = tmp_regress tmp_check results regression.diffs regression.out log
