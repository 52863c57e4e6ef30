#!/usr/bin/env bash
# Install what building and testing pagerduty needs, if it is missing
# (Debian 12).  As root it runs apt-get; otherwise it only says what is missing.
set -euo pipefail

packages=(
	make gcc                      # the build
	postgresql-15                 # the server the tests run
	postgresql-server-dev-15      # PGXS, server headers, PostgreSQL::Test::Cluster
	libcurl4-openssl-dev          # libcurl
	postgresql-15-cron            # pg_cron, for the scheduled-check tests
	libipc-run-perl               # IPC::Run, for the TAP tests
	python3                       # the Events API stand-in (test/events_api.py)
	wrk                           # the HTTP baseline of make bench
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "missing packages: ${missing[*]}" >&2
	echo "install them (apt-get install ${missing[*]}) or run this as root" >&2
	exit 1
fi

echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
