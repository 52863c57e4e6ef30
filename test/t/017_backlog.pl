# A backlog of a million events: the worker drains it with bounded memory
# (it claims at most batch_size events at a time), and the status view and
# pagerduty_wait() stay usable.
use strict;
use warnings;

use EventsApi;
use PagerDutyTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $api = EventsApi->start;
my $node = PagerDutyTest::node('backlog', $api, conf => <<'CONF');
pagerduty.rate_limit = 0
shared_buffers = '256MB'
max_wal_size = '2GB'
CONF
PagerDutyTest::add_service($node, 'db', routing_key(1), default => 1);

# The worker's private memory (heap), from /proc: RssAnon leaves out the
# shared buffers it has touched.
sub worker_heap_kb
{
	my $pid = PagerDutyTest::worker_pid($node);
	open my $fh, '<', "/proc/$pid/status" or return -1;
	my ($kb) = map { /^RssAnon:\s+(\d+)/ ? $1 : () } <$fh>;
	return $kb // -1;
}

sub delivered
{
	return $node->safe_psql('app', q{SELECT count(*) FROM pagerduty_outbox WHERE status = 'delivered'});
}

ok(PagerDutyTest::poll($node, q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pagerduty worker'}),
	'the worker runs');
my $idle_kb = worker_heap_kb();
ok($idle_kb > 0, "the worker's memory can be read ($idle_kb kB idle)");

# a million pending events, written straight into the outbox in one go
$node->safe_psql('app', q{
	INSERT INTO pagerduty_outbox (service, event_action, dedup_key, severity, payload)
	SELECT 'db', 'trigger', 'backlog-' || i, 'error',
	       json_build_object('event_action', 'trigger', 'dedup_key', 'backlog-' || i,
	                         'payload', json_build_object('summary', 'backlog event ' || i,
	                                                      'source', 'test', 'severity', 'error'))
	FROM generate_series(1, 1000000) AS i});
is($node->safe_psql('app', q{SELECT events FROM pagerduty_status WHERE status = 'pending'}),
	'1000000', 'a million events are pending');

ok(PagerDutyTest::poll($node, q{SELECT count(*) >= 5000 FROM pagerduty_outbox WHERE status = 'delivered'}),
	'the drain is under way');
my $early_kb = worker_heap_kb();
ok(PagerDutyTest::poll($node, q{SELECT count(*) >= 40000 FROM pagerduty_outbox WHERE status = 'delivered'}),
	'and goes on');
my $late_kb = worker_heap_kb();
note("worker heap: idle $idle_kb kB, after 5k sent $early_kb kB, after 40k sent $late_kb kB");
ok($late_kb < 64 * 1024, 'the worker stays under 64 MB of private memory with a million events waiting');
ok($late_kb - $early_kb < 8 * 1024, 'and does not grow as the drain goes on (less than 8 MB between the samples)');

my $reqs = $api->requests(since => 0);
my %bad = map { $_->{status} => 1 } grep { $_->{status} != 202 } @$reqs;
is_deeply(\%bad, {}, 'every request was accepted');

# pagerduty_wait() with a backlog: false on timeout, promptly
is($node->safe_psql('app', q{SELECT pagerduty_wait('100 ms')}), 'f', 'pagerduty_wait() times out while the backlog drains');

$node->stop('immediate');
done_testing();
