# The worker's life: it waits quietly for its database and for CREATE
# EXTENSION, is restarted when it dies, and never blocks DROP EXTENSION or
# DROP DATABASE, coming back when they are created again.  Without
# preloading, the functions still enqueue and CREATE EXTENSION warns.
use strict;
use warnings;

use EventsApi;
use PagerDutyTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $api = EventsApi->start;
my $key = routing_key(1);

sub count_in_log
{
	my ($node, $re) = @_;
	return scalar(() = slurp_file($node->logfile) =~ /$re/g);
}

sub setup_app
{
	my ($node) = @_;
	$node->safe_psql('app', 'CREATE EXTENSION pagerduty');
	PagerDutyTest::add_service($node, 'db', $key, default => 1);
}

sub delivered
{
	my ($node, $message) = @_;
	$api->clear_requests;
	$node->safe_psql('app', qq{SELECT pagerduty_trigger('{"message": "$message"}')});
	my $got = $api->wait_for_requests(1,
		filter => sub { ($_[0]{body}{payload}{summary} // '') eq $message });
	return @$got == 1 && $got->[0]{status} == 202;
}

my $node = PagerDutyTest::node('lifecycle', $api, no_db => 1);

# No database "app" yet: the launcher says so once, and keeps waiting without
# starting a worker that would fail.  Each CREATE DATABASE wakes it to look
# again; it does not say it again.
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pagerduty launcher'}),
	'the launcher runs');
$node->safe_psql('postgres', 'CREATE DATABASE other1');
$node->safe_psql('postgres', 'CREATE DATABASE other2');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pagerduty worker'}),
	'no worker while the database is missing');
is(count_in_log($node, qr/database "app" does not exist; events will be delivered once it is created/), 1,
	'the missing database is logged once');
is(count_in_log($node, qr/pagerduty (?:launcher|worker) (?:FATAL|ERROR)|"pagerduty worker" .* exited/), 0,
	'no worker failed, nothing crash-looped');

# The database appears: the worker starts, and waits for CREATE EXTENSION.
$node->safe_psql('postgres', 'CREATE DATABASE app');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pagerduty worker' AND datname = 'app'}),
	'the worker starts once the database exists');
setup_app($node);
ok(delivered($node, 'after create extension'), 'events are delivered once the extension is created');

# The worker dies: the launcher starts another, and nothing is lost.
my $pid = PagerDutyTest::worker_pid($node);
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$node->safe_psql('app', q{SELECT pagerduty_trigger('{"message": "while the worker was down"}')});
ok(PagerDutyTest::poll($node, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pagerduty worker' AND pid <> $pid"),
	'a terminated worker is started again');
ok(PagerDutyTest::poll($node, q{SELECT status = 'delivered' FROM pagerduty_outbox WHERE event->>'message' = 'while the worker was down'}),
	'the event enqueued while it was down is delivered');

# DROP EXTENSION while requests are in flight: the worker holds no lock
# while it waits for the network, so the DROP does not wait for it.
$api->set_rules({ action => 'slow', delay => 3 });
$api->clear_requests;
$node->safe_psql('app', q{SELECT pagerduty_trigger(jsonb_build_object('message', 'in flight ' || i)) FROM generate_series(1, 5) AS i});
$api->wait_for_requests(5);
my ($ret, $out, $err) = $node->psql('app', q{SET lock_timeout = '1s'; DROP EXTENSION pagerduty});
is($ret, 0, 'DROP EXTENSION does not wait for requests in flight');
is($err, '', 'and raises nothing') or diag($err);
$api->clear_rules;
# the answers to the requests of the dropped outbox are dropped too; the
# worker carries on, and serves the extension created again
setup_app($node);
ok(delivered($node, 'after drop and create extension'), 'a new extension is served');
ok(PagerDutyTest::worker_pid($node) ne '', 'the worker is still running');

# A transaction holding a lock on the outbox (VACUUM FULL, DDL) makes the
# worker step aside, not queue up behind it.
my $locker = $node->background_psql('app');
$locker->query_safe('BEGIN; LOCK TABLE pagerduty_outbox IN ACCESS EXCLUSIVE MODE;');
$node->safe_psql('app', q{SELECT 1});
ok($node->poll_query_until('app', q{SELECT count(*) = 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.backend_type = 'pagerduty worker' AND NOT l.granted}),
	'the worker is not waiting for the lock');
$locker->query_safe('COMMIT;');
$locker->quit;
ok(delivered($node, 'after the lock'), 'and delivers once the lock is gone');

# A role that may not drop the database cannot send the worker away by
# trying to.
my $pid_before = PagerDutyTest::worker_pid($node);
$node->safe_psql('postgres', 'CREATE ROLE mallory LOGIN CREATEDB');
($ret, $out, $err) = $node->psql('postgres', 'SET ROLE mallory; DROP DATABASE app');
like($err, qr/must be owner of database app/, 'a non-owner cannot drop the database');
($ret, $out, $err) = $node->psql('postgres', 'SET ROLE mallory; CREATE DATABASE copy TEMPLATE app');
like($err, qr/permission denied to copy database "app"/, 'nor copy it');
is(PagerDutyTest::worker_pid($node), $pid_before, 'and the worker was not disturbed');
($ret, $out, $err) = $node->psql('postgres', 'BEGIN; DROP DATABASE app');
like($err, qr/cannot run inside a transaction block/, 'DROP DATABASE in a transaction block fails');
is(PagerDutyTest::worker_pid($node), $pid_before, 'and leaves the worker alone');

# The launcher is terminated: the postmaster starts it again; it does not
# start a second worker beside the one still running.
my $launcher = $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pagerduty launcher'});
$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pagerduty launcher' AND pid <> $launcher"),
	'a terminated launcher is started again');
ok(delivered($node, 'after the launcher restarted'), 'events are still delivered');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pagerduty worker'}), '1',
	'by one worker, the same as before') ;
is(PagerDutyTest::worker_pid($node), $pid_before, 'the worker did not change');

# DROP DATABASE with the worker connected to it: the worker leaves, the DROP
# succeeds without FORCE, and the worker comes back with the database.
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE app');
is($ret, 0, 'DROP DATABASE succeeds while the worker serves it');
is($err, '', 'without "being accessed by other users"') or diag($err);
$node->safe_psql('postgres', 'CREATE DATABASE app');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pagerduty worker' AND datname = 'app'}),
	'the worker comes back when the database is created again');
setup_app($node);
ok(delivered($node, 'after drop and create database'), 'and delivers');

# RENAME needs the database to itself too.
($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE app RENAME TO app_old');
is($ret, 0, 'ALTER DATABASE ... RENAME succeeds while the worker serves it');
$node->safe_psql('postgres', 'ALTER DATABASE app_old RENAME TO app');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pagerduty worker' AND datname = 'app'}),
	'the worker comes back under the old name');
ok(delivered($node, 'after rename'), 'and delivers');
$node->stop;

# Without shared_preload_libraries: CREATE EXTENSION warns, the functions
# still enqueue (nothing delivers them).
my $plain = PagerDutyTest::node('notpreloaded', $api, preload => '', no_db => 1);
$plain->safe_psql('postgres', 'CREATE DATABASE app');
($ret, $out, $err) = $plain->psql('app', 'CREATE EXTENSION pagerduty');
is($ret, 0, 'CREATE EXTENSION works without preloading');
like($err, qr/WARNING:  pagerduty is not in shared_preload_libraries: events will be enqueued but not delivered/,
	'and warns that nothing will be delivered');
PagerDutyTest::add_service($plain, 'db', $key, default => 1);
$plain->safe_psql('app', q{SELECT pagerduty_trigger('{"message": "queued"}')});
is($plain->safe_psql('app', q{SELECT status FROM pagerduty_outbox}), 'pending', 'the event is enqueued');
is($plain->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pagerduty%'}),
	'0', 'and no worker runs');
$plain->stop;

done_testing();
