# Failover: on a streaming standby the launcher and the worker do not run;
# events committed on the primary and still pending there (PagerDuty down,
# or their requests still in flight when the primary dies) are replicated,
# and after the primary crashes and the standby is promoted, the promoted
# standby starts the worker, sends the in-flight ones again, and delivers
# every one of them, a resolve never before its trigger; then the events
# enqueued on it as well.
use strict;
use warnings;

use EventsApi;
use PagerDutyTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $N = 50;				# events pending at the failover: dedup keys failover-1 .. failover-50
my $K = 5;				# and in flight at the failover: hung-1 .. hung-5, each with a resolve queued behind
my $M = 20;				# events enqueued after it: after-1 .. after-20

my $api = EventsApi->start;
my $primary = PagerDutyTest::node('primary', $api,
	init => { allows_streaming => 1 },
	conf => "pagerduty.max_attempts = 1000\npagerduty.request_timeout = '5min'\n");
my ($key, $hung_key) = (routing_key(1), routing_key(2));
PagerDutyTest::add_service($primary, 'db', $key, default => 1);
PagerDutyTest::add_service($primary, 'hung', $hung_key);

# the background processes of the extension running on a node, by type
sub pd_processes
{
	my ($node) = @_;
	return $node->safe_psql('postgres', q{
		SELECT coalesce(string_agg(backend_type, ', ' ORDER BY backend_type), 'none')
		FROM pg_stat_activity WHERE backend_type IN ('pagerduty launcher', 'pagerduty worker')});
}

ok(PagerDutyTest::poll($primary, q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pagerduty worker' AND datname = 'app'}),
	'the primary runs the delivery worker');
is(pd_processes($primary), 'pagerduty launcher, pagerduty worker', 'and the launcher');

# A streaming standby from a backup.  Its configuration is the primary's,
# copied with the backup: the library preloaded, serving "app", sending to
# the same stand-in.
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;
is($standby->safe_psql('postgres', q{SELECT current_setting('shared_preload_libraries') || ' ' || current_setting('pagerduty.database') || ' ' || current_setting('pagerduty.events_url')}),
	'pagerduty app ' . $api->url, 'the standby preloads pagerduty, serving app, with the same events URL');

# PagerDuty is down: every request gets 503, so the events stay pending on
# the primary, retried with backoff; and the requests of service "hung" get
# no answer for two minutes (well within pagerduty.request_timeout), so its
# triggers stay in flight (claimed), each with its resolve waiting behind it.
$api->set_rules({ routing_key => $hung_key, action => 'slow', delay => 120 },
	{ action => 'status', status => 503 });
$primary->safe_psql('app', qq{
	SELECT count(pagerduty_trigger(jsonb_build_object('message', 'failover ' || i), NULL, NULL, 'failover-' || i))
	FROM generate_series(1, $N) i});
$primary->safe_psql('app', qq{
	SELECT count(pagerduty_trigger(jsonb_build_object('message', 'hung ' || i), NULL, 'hung', 'hung-' || i))
	FROM generate_series(1, $K) i;
	SELECT count(pagerduty_resolve('hung-' || i, 'hung')) FROM generate_series(1, $K) i;});
ok(PagerDutyTest::poll($primary, qq{SELECT count(*) = $N FROM pagerduty_outbox WHERE service = 'db' AND status = 'pending' AND attempts >= 1 AND http_status = 503}),
	'the primary tried every event, PagerDuty answered 503, and they stay pending');
ok(PagerDutyTest::poll($primary, qq{
	SELECT count(*) FILTER (WHERE event_action = 'trigger' AND claimed_at IS NOT NULL) = $K
	   AND count(*) FILTER (WHERE event_action = 'resolve' AND attempts = 0) = $K
	FROM pagerduty_outbox WHERE service = 'hung' AND status = 'pending'}),
	'the triggers of "hung" are in flight, their resolves wait');
$primary->wait_for_catchup($standby);
is($standby->safe_psql('app', q{SELECT count(*) FROM pagerduty_outbox WHERE status = 'pending'}),
	$N + 2 * $K, 'the standby has replayed the pending events');
is($standby->safe_psql('app', q{SELECT count(*) FROM pagerduty_outbox WHERE service = 'hung' AND event_action = 'trigger' AND claimed_at IS NOT NULL}),
	$K, 'and the claims of those in flight');

# While it is a standby, nothing of the extension runs there, and nothing
# can be enqueued.
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
is(pd_processes($standby), 'none', 'no pagerduty launcher or worker runs on the standby');
my ($rc, $out, $err) = $standby->psql('app', q{SELECT pagerduty_trigger('{"message": "on a standby"}')});
like($err, qr/read-only transaction/, 'enqueueing on the standby fails: it is read-only');
is($standby->safe_psql('app', q{SELECT pagerduty_wait('0s')}), 'f',
	'pagerduty_wait() on the standby says events are still due (those in flight)');

# The primary crashes.  PagerDuty is back.  The standby is promoted.
$primary->stop('immediate');
$api->clear_rules;
$api->clear_requests;
my $promoted_at = time();
$standby->promote;
ok($standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'the standby was promoted');
ok(PagerDutyTest::poll($standby, q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pagerduty worker' AND datname = 'app'}),
	'the promoted standby runs the delivery worker');
is(pd_processes($standby), 'pagerduty launcher, pagerduty worker', 'and the launcher');

# Every event pending at the failover is delivered by the promoted standby,
# once each (it did not crash between sending and recording), the events
# in flight at the failover included, each resolve after its trigger.
my %pending = map { ("failover-$_" => 1) } 1 .. $N;
my %hung = map { ("hung-$_" => 1) } 1 .. $K;
my $reqs = $api->wait_for_requests($N + 2 * $K,
	filter => sub { ($pending{ $_[0]{dedup_key} // '' } || $hung{ $_[0]{dedup_key} // '' }) && $_[0]{status} == 202 },
	timeout => 120);
my $delivered_in = time() - $promoted_at;
my $first_in = @$reqs ? $reqs->[0]{t} - $promoted_at : -1;
my (%arrived, %seq);
for my $r (@$reqs)
{
	$arrived{"$r->{event_action} $r->{dedup_key}"}++;
	$seq{"$r->{event_action} $r->{dedup_key}"} = $r->{seq};
}
note(sprintf('%d of %d events pending at the failover arrived, the first %.2f s and the last %.1f s after the promotion (those that got 503 wait for their retry time)',
	scalar keys %arrived, $N + 2 * $K, $first_in, $delivered_in));
my @expected = ((map { "trigger $_" } keys %pending, keys %hung), map { "resolve $_" } keys %hung);
is_deeply([ grep { !$arrived{$_} } sort @expected ], [], 'every event pending at the failover arrived, accepted');
is_deeply([ grep { $arrived{$_} > 1 } sort keys %arrived ], [], 'each once');
is_deeply([ sort map { $_->{routing_key} } grep { $hung{ $_->{dedup_key} } } @$reqs ], [ ($hung_key) x (2 * $K) ],
	'with its service\'s routing key');
is_deeply([ grep { $seq{"resolve $_"} < $seq{"trigger $_"} } sort keys %hung ], [],
	'each resolve after its trigger, sent again after the failover');
ok(PagerDutyTest::wait_sent($standby), 'pagerduty_wait() returns true on the promoted standby');
is($standby->safe_psql('app', q{
	SELECT count(*) FILTER (WHERE status = 'delivered' AND http_status = 202 AND claimed_at IS NULL)
	FROM pagerduty_outbox}),
	$N + 2 * $K, 'its outbox shows them delivered');
is($standby->safe_psql('app', q{SELECT string_agg(DISTINCT attempts::text, ',') FROM pagerduty_outbox WHERE service = 'hung' AND event_action = 'trigger'}),
	'2', 'the triggers in flight at the failover took two attempts, one on each server');
my ($released) = slurp_file($standby->logfile)
  =~ /pagerduty: (\d+) events that were in flight when the previous worker stopped will be sent again/;
ok(defined $released && $released >= $K,
	'the promoted standby logged that it sends the events in flight again (' . ($released // 'no line') . ')');

# Events enqueued on the promoted standby are delivered too.
$standby->safe_psql('app', qq{
	SELECT count(pagerduty_trigger(jsonb_build_object('message', 'after failover ' || i), NULL, NULL, 'after-' || i))
	FROM generate_series(1, $M) i});
my %after = map { ("after-$_" => 1) } 1 .. $M;
$reqs = $api->wait_for_requests($M,
	filter => sub { $after{ $_[0]{dedup_key} // '' } && $_[0]{status} == 202 }, timeout => 60);
is(scalar @$reqs, $M, 'events enqueued after the promotion arrive, accepted');
ok(PagerDutyTest::wait_sent($standby), 'pagerduty_wait() returns true');
is($standby->safe_psql('app', q{SELECT status || ' ' || count(*) FROM pagerduty_outbox GROUP BY status}),
	'delivered ' . ($N + 2 * $K + $M), 'every event in the outbox is delivered');
is_deeply([ grep { $_->{status} != 202 } @{ $api->requests } ], [],
	'the promoted standby sent nothing PagerDuty did not accept');

ok(PagerDutyTest::log_has_no_keys($primary, $key, $hung_key), 'no routing key in the primary\'s log');
ok(PagerDutyTest::log_has_no_keys($standby, $key, $hung_key), 'nor in the standby\'s');

$standby->stop;
$api->stop;
done_testing();
