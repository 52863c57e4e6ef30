#!/usr/bin/env bash
# make test | make demo | make bench
#
# On a fresh Debian 12 machine, as root: install what is missing, build,
# install, then run the step as an unprivileged user (initdb refuses root)
# in a copy of the tree that user owns.  Not root: the same, in place,
# provided the packages are there and the install directory is writable.
set -euo pipefail

step=${1:?usage: run.sh test|demo|bench}
src=$(cd "$(dirname "$0")/.." && pwd)

"$src/test/deps.sh"

make -C "$src" -s
make -C "$src" -s install >/dev/null

case "$step" in
	test)  cmd='make -s installcheck && test/demo.sh' ;;
	demo)  cmd='test/demo.sh' ;;
	bench) cmd='test/bench/run.sh' ;;
	*)     echo "unknown step: $step" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
	cd "$src"
	exec bash -c "$cmd"
fi

# As root: run as the postgres user (created by the postgresql package) in
# a private copy of the tree.
user=postgres
id "$user" >/dev/null 2>&1 || useradd --system --create-home "$user"
work=$(mktemp -d "/tmp/pagerduty-$step.XXXXXX")
tar -C "$src" --exclude=./.git --exclude=./tmp_check --exclude=./tmp_regress \
	--exclude=./results --exclude='*.o' --exclude='*.bc' --exclude='*.so' -cf - . |
	tar -C "$work" -xf -
chown -R "$user" "$work"

status=0
runuser -u "$user" -- env -i PATH="$PATH" HOME="$work" LANG=C.UTF-8 \
	${PAGERDUTY_ROUTING_KEY:+PAGERDUTY_ROUTING_KEY="$PAGERDUTY_ROUTING_KEY"} \
	${BENCH_OUT:+BENCH_OUT="$work/bench.md"} \
	bash -c "cd '$work' && $cmd" || status=$?
# the benchmark's Markdown report, written where the unprivileged user could
if [ -n "${BENCH_OUT:-}" ] && [ -f "$work/bench.md" ]; then
	cp "$work/bench.md" "$BENCH_OUT"
fi

if [ $status -ne 0 ]; then
	if [ "$step" = test ]; then
		[ -f "$work/regression.diffs" ] && { echo "=== regression.diffs"; cat "$work/regression.diffs"; }
		for f in "$work"/tmp_check/log/regress_log_*; do
			[ -f "$f" ] && grep -q "not ok" "$f" && { echo "=== $f (last lines)"; tail -n 60 "$f"; }
		done
	fi
	echo "$step failed; its files are in $work" >&2
	exit $status
fi
rm -rf "$work"
