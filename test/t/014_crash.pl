# Crash safety, in the middle of a large drain, twice:
#  1. the whole server is killed with SIGKILL (postmaster and every child)
#     and started again;
#  2. only the delivery worker is killed with SIGKILL, and the postmaster
#     goes through its own crash-restart cycle.
# Each time, after crash recovery: every committed event arrives (at least
# once, accepted with 202); no event of a transaction that rolled back,
# failed, or was still open at the crash is ever sent; an event sent twice
# is one that was in flight at the crash (claimed, sent, its outcome not
# yet recorded), sent once before the crash and once after, with the same
# dedup key; the new worker logs how many in-flight events it sends again.
use strict;
use warnings;

use EventsApi;
use PagerDutyTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);

my $COMMITTED = 3000;	# committed before the first crash: committed-1 .. committed-3000
my $BATCHES = 6;		# in this many transactions
my $SECOND = 1000;		# committed before the second: second-1 .. second-1000
my $IN_FLIGHT_LOG = qr/pagerduty: (\d+) events that were in flight when the previous worker stopped will be sent again/;

my $api = EventsApi->start;
my $node = PagerDutyTest::node('crash', $api, conf => <<'CONF');
pagerduty.rate_limit = 0
pagerduty.max_connections = 8
# the test framework turns it off; part 2 needs the postmaster's own restart
restart_after_crash = on
CONF
my $key = routing_key(1);
PagerDutyTest::add_service($node, 'db', $key, default => 1);
ok(PagerDutyTest::poll($node, q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pagerduty worker' AND datname = 'app'}),
	'the delivery worker is connected to app');

# SQL that enqueues the triggers $prefix$lo .. $prefix$hi in one statement.
sub enqueue_sql
{
	my ($prefix, $lo, $hi) = @_;
	return qq{SELECT count(pagerduty_trigger(jsonb_build_object('message', 'crash test $prefix' || i), NULL, NULL, '$prefix' || i)) FROM generate_series($lo, $hi) i;};
}

# The pids of a process's children, from /proc.
sub children_of
{
	my ($ppid) = @_;
	my @pids;
	for my $stat (glob '/proc/[0-9]*/stat')
	{
		open my $fh, '<', $stat or next;
		my $line = <$fh>;
		close $fh;
		next unless defined $line;
		# pid (comm) state ppid ...: comm may hold spaces and parentheses
		push @pids, $1 if $line =~ /^(\d+) \(.*\) \S+ (\d+) / && $2 == $ppid;
	}
	return @pids;
}

# A process is dead once it no longer exists or is only a zombie.
sub dead
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/stat" or return 1;
	my $line = <$fh> // '';
	close $fh;
	return $line =~ /^\d+ \(.*\) [ZX] /;
}

# Wait until at least $n requests for dedup keys starting with $prefix have
# arrived (since seq $since); returns how many did.
sub wait_for_drain
{
	my ($prefix, $n, $since) = @_;
	my $deadline = time() + 60;
	my $count = 0;
	while (time() < $deadline)
	{
		$count = grep { index($_->{dedup_key} // '', $prefix) == 0 } @{ $api->requests(since => $since) };
		last if $count >= $n;
		sleep 0.05;
	}
	return $count;
}

# The seq of the last request, once no more arrive.  Called when nothing
# can send any more: the only requests still to be recorded are those
# already on the wire, read by the stand-in within moments.
sub last_seq_when_quiet
{
	my ($since) = @_;
	my $deadline = time() + 30;
	my ($last, $quiet_since) = (-1, time());
	while (time() < $deadline)
	{
		my $requests = $api->requests(since => $since);
		my $seq = @$requests ? $requests->[-1]{seq} : $since;
		($last, $quiet_since) = ($seq, time()) if $seq != $last;
		last if time() - $quiet_since >= 0.3;
		sleep 0.05;
	}
	return $last;
}

# What must hold once the outbox is drained again after a crash, for the
# $count events $prefix-1 .. $prefix-$count committed before it.  $since:
# the last request before the events were enqueued; $crash_seq: the last
# before the crash; $log: the server log since the crash.
sub check_after_crash
{
	my ($what, $prefix, $count, $since, $crash_seq, $log) = @_;

	# Every committed event arrived, accepted; nothing else ever did.
	my $all = $api->requests(since => $since);
	my (%sent, %accepted, @others);
	for my $r (@$all)
	{
		my $dedup = $r->{dedup_key} // '(none)';
		if ($dedup =~ /^\Q$prefix\E(\d+)$/ && $1 >= 1 && $1 <= $count)
		{
			push @{ $sent{$dedup} }, $r;
			$accepted{$dedup} = 1 if $r->{status} == 202 && !@{ $r->{errors} };
		}
		else
		{
			push @others, $dedup;
		}
	}
	my @missing = grep { !$accepted{"$prefix$_"} } 1 .. $count;
	my @duplicated = sort { $a cmp $b } grep { @{ $sent{$_} } > 1 } keys %sent;
	my $before = grep { $_->{seq} <= $crash_seq } @$all;
	note(sprintf('%s: committed %d, arrived %d (%d before the crash, %d after), distinct %d, missing %d, duplicated %d',
		$what, $count, scalar @$all, $before, @$all - $before, scalar keys %sent,
		scalar @missing, scalar @duplicated));
	cmp_ok($before, '<', $count, "$what: the crash came before the drain was done");
	is(scalar @missing, 0, "$what: every committed event arrived and was accepted")
	  or diag('missing: ' . join(', ', @missing[ 0 .. ($#missing < 9 ? $#missing : 9) ]));
	is_deeply(\@others, [], "$what: no event of a rolled-back, failed or never committed transaction was sent");
	is_deeply([ map { "$_->{dedup_key}: $_->{status}" } grep { $_->{status} != 202 } @$all ], [],
		"$what: every request was accepted");

	# The outbox agrees: every committed event delivered, nothing else there.
	is($node->safe_psql('app', qq{
		SELECT count(*) || ' ' || count(*) FILTER (WHERE status = 'delivered' AND http_status = 202
		                                     AND delivered_at IS NOT NULL AND claimed_at IS NULL)
		FROM pagerduty_outbox WHERE dedup_key LIKE '$prefix%'}),
		"$count $count", "$what: the outbox holds every committed event, delivered");
	is($node->safe_psql('app', q{SELECT count(*) FROM pagerduty_outbox WHERE dedup_key !~ '^(committed|second)-'}),
		'0', "$what: and no event of a transaction that did not commit");

	# Duplicates: only events that were in flight at the crash.  Those
	# were claimed before it (an attempt counted) and claimed again after
	# it, so their rows show two attempts; each was sent exactly once
	# before the crash and once after, both times with its own dedup key.
	my %attempts = map { split /\|/ } split /\n/, $node->safe_psql('app',
		"SELECT dedup_key, attempts FROM pagerduty_outbox WHERE dedup_key LIKE '$prefix%' AND attempts <> 1");
	my $resent = scalar keys %attempts;
	is_deeply([ grep { $attempts{$_} != 2 } sort keys %attempts ], [],
		"$what: no event needed more than one attempt after the crash");
	my @bad_dups;
	for my $dedup (@duplicated)
	{
		my @seqs = map { $_->{seq} } @{ $sent{$dedup} };
		push @bad_dups, $dedup
		  unless @seqs == 2 && $seqs[0] <= $crash_seq && $seqs[1] > $crash_seq
		  && ($attempts{$dedup} // 1) == 2;
	}
	is_deeply(\@bad_dups, [],
		"$what: each duplicate was sent once before the crash and once after, and was in flight at the crash");
	my %sent_before = map { ($_->{dedup_key} // '') => 1 } grep { $_->{seq} <= $crash_seq } @$all;
	note(sprintf('%s: in flight at the crash: %d events claimed; %d of them had reached the Events API (sent again: the duplicates), %d had not',
		$what, $resent, scalar @duplicated, scalar grep { !$sent_before{$_} } keys %attempts));

	# The new worker said how many in-flight events it sends again.  There
	# are nearly always some in flight at the crash, but not necessarily.
	if ($log =~ $IN_FLIGHT_LOG)
	{
		is($1, $resent, "$what: the new worker logged the number of in-flight events it sends again");
	}
	else
	{
		is($resent, 0, "$what: nothing was in flight at the crash, and the new worker logged nothing about it");
	}
}

# ---------------------------------------------------------------------------
# 1. The whole server killed with SIGKILL.

# Answer slowly, so that the drain of a few thousand events takes seconds
# and the crash comes in the middle of it.
$api->set_rules({ action => 'slow', delay => 0.02 });

# A transaction that is still open when the server dies: its events come
# first in the outbox (lowest ids) and are never committed.
my $open = $node->background_psql('app');
$open->query_safe('BEGIN');
$open->query_safe(enqueue_sql('open-', 1, 100));

# The committed events, in a few big transactions, each with a part rolled
# back to a savepoint; between them, transactions that roll back, and one
# that fails and so rolls back at COMMIT.
my $per_batch = $COMMITTED / $BATCHES;
for my $b (0 .. $BATCHES - 1)
{
	my ($lo, $hi) = ($b * $per_batch + 1, ($b + 1) * $per_batch);
	my $mid = $lo + int($per_batch / 2);
	$node->safe_psql('app', join "\n",
		'BEGIN;',
		enqueue_sql('committed-', $lo, $mid - 1),
		'SAVEPOINT s;',
		enqueue_sql("rolled-back-to-savepoint-$b-", 1, 20),
		'ROLLBACK TO SAVEPOINT s;',
		enqueue_sql('committed-', $mid, $hi),
		'COMMIT;');
	$node->safe_psql('app', join "\n",
		'BEGIN;', enqueue_sql("rolled-back-$b-", 1, 50), 'ROLLBACK;');
}
my ($rc, $out, $err) = $node->psql('app', join "\n",
	'BEGIN;', enqueue_sql('failed-', 1, 50), 'SELECT 1/0;', 'COMMIT;');
like($err, qr/division by zero/, 'a transaction that failed after enqueueing rolled back');
$open->query_safe(enqueue_sql('open-', 101, 200));

# Wait until the drain is well under way, then kill the whole server at
# once: stop the postmaster so it can neither fork nor react, SIGKILL every
# child of it, then the postmaster.  Nothing gets to shut down cleanly.
my $arrived = wait_for_drain('committed-', 300, 0);
ok($arrived >= 300, "the drain is under way ($arrived requests arrived)");

my $postmaster = (split /\n/, slurp_file($node->data_dir . '/postmaster.pid'))[0];
kill 'STOP', $postmaster;
my @children = children_of($postmaster);
kill 'KILL', @children;
$node->kill9;
my $deadline = time() + 60;
sleep 0.02 while grep({ !dead($_) } $postmaster, @children) && time() < $deadline;
ok(!grep({ !dead($_) } $postmaster, @children),
	'the postmaster and its ' . scalar(@children) . ' children were killed');

# The dead postmaster's pid stays in postmaster.pid.  The next postmaster
# refuses to start while a process of that pid exists, and a zombie counts:
# wait for the killed postmaster to be reaped.  Where nobody reaps it (a
# container whose init does not), remove the stale lock file, as an
# administrator would.
$deadline = time() + 30;
sleep 0.02 while -e "/proc/$postmaster" && time() < $deadline;
if (-e "/proc/$postmaster")
{
	note("the killed postmaster $postmaster is still a zombie; removing its postmaster.pid");
	unlink($node->data_dir . '/postmaster.pid') or die "cannot remove postmaster.pid: $!";
}

# What arrived came before the crash.  The session of the open transaction
# finds its server gone.
my $crash_seq = last_seq_when_quiet(0);
my $log_offset = -s $node->logfile;
$open->quit;

# Restart: crash recovery, then a new worker serves the outbox, fast now.
$api->clear_rules;
$node->start;
ok(PagerDutyTest::wait_sent($node, 120), 'pagerduty_wait() returns true after the restart');
ok(PagerDutyTest::poll($node, q{SELECT count(*) = 0 FROM pagerduty_outbox WHERE status = 'pending'}),
	'no event is left pending');
my $log = slurp_file($node->logfile, $log_offset);
like($log, qr/database system was not properly shut down; automatic recovery in progress/,
	'the server went through crash recovery');
check_after_crash('server killed', 'committed-', $COMMITTED, 0, $crash_seq, $log);

# ---------------------------------------------------------------------------
# 2. The worker alone killed with SIGKILL: the postmaster ends every other
# process, recovers and starts again by itself.

my $since = $api->requests->[-1]{seq};
$api->set_rules({ action => 'slow', delay => 0.02 });
$node->safe_psql('app', enqueue_sql('second-', 1, $SECOND / 2));
$node->safe_psql('app', join "\n", 'BEGIN;', enqueue_sql('rolled-back-second-', 1, 50), 'ROLLBACK;');
$node->safe_psql('app', enqueue_sql('second-', $SECOND / 2 + 1, $SECOND));
$arrived = wait_for_drain('second-', 100, $since);
ok($arrived >= 100, "the drain is under way again ($arrived requests arrived)");

# The postmaster is held (SIGSTOP) while the worker dies, so that what
# the dead worker sent can be told from what the next one sends.
my $worker = PagerDutyTest::worker_pid($node);
$postmaster = (split /\n/, slurp_file($node->data_dir . '/postmaster.pid'))[0];
$log_offset = -s $node->logfile;
kill 'STOP', $postmaster;
kill 'KILL', $worker;
$deadline = time() + 60;
sleep 0.02 while !dead($worker) && time() < $deadline;
ok(dead($worker), 'the worker was killed');
$crash_seq = last_seq_when_quiet($since);
$api->clear_rules;
kill 'CONT', $postmaster;

ok(PagerDutyTest::poll($node, qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pagerduty worker' AND pid <> $worker}),
	'a new worker runs after the crash-restart');
ok(PagerDutyTest::wait_sent($node, 120), 'pagerduty_wait() returns true');
ok(PagerDutyTest::poll($node, q{SELECT count(*) = 0 FROM pagerduty_outbox WHERE status = 'pending'}),
	'no event is left pending');
$log = slurp_file($node->logfile, $log_offset);
like($log, qr/background worker "pagerduty worker" \(PID $worker\) was terminated by signal 9/, 'the postmaster saw the worker die');
like($log, qr/all server processes terminated; reinitializing/, 'and restarted every process');
check_after_crash('worker killed', 'second-', $SECOND, $since, $crash_seq, $log);

ok(PagerDutyTest::log_has_no_keys($node, $key), 'no routing key in the server log');

$node->stop;
$api->stop;
done_testing();
