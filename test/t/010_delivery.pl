# Delivery: a committed event reaches the Events API, woken at commit, with a
# body PagerDuty's rules accept; a rolled-back one never does; each kind of
# event goes to its URL.
use strict;
use warnings;

use EventsApi;
use PagerDutyTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use JSON::PP;

my $api = EventsApi->start;
my $node = PagerDutyTest::node('delivery', $api);
my ($k1, $k2, $k3) = (routing_key(1), routing_key(2), routing_key(3));
PagerDutyTest::add_service($node, 'db', $k1, default => 1);
PagerDutyTest::add_service($node, 'billing', $k2);
PagerDutyTest::add_service($node, 'eu', $k3, events_url => $api->base . '/eu/v2/enqueue');

# the worker runs, connected to "app"
ok(PagerDutyTest::poll($node, q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pagerduty worker' AND datname = 'app'}),
	'the delivery worker is connected to app');

# A Sentry-like event, committed: it arrives, PagerDuty's rules accept it,
# and the outbox says so.
my $dedup = $node->safe_psql('app', q{SELECT pagerduty_trigger($${
	"event_id": "fc6d8c0c43fc4630ad850ee518f1b9d0", "message": "ZeroDivisionError: division by zero",
	"level": "error", "culprit": "app.views.divide", "timestamp": "2026-12-04T10:00:00Z",
	"url": "https://sentry.example.com/issues/1/", "tags": {"env": "prod"}}$$)});
my $reqs = $api->wait_for_requests(1);
is(scalar @$reqs, 1, 'the trigger arrived once');
my $r = $reqs->[0];
is($r->{status}, 202, 'the Events API accepted it');
is_deeply($r->{errors}, [], 'no rule of the Events API was broken');
is($r->{path}, '/v2/enqueue', 'to /v2/enqueue');
is($r->{routing_key}, $k1, 'with the default service\'s routing key');
is($r->{dedup_key}, $dedup, 'with the dedup key pagerduty_trigger() returned');
is($r->{body}{payload}{summary}, 'ZeroDivisionError: division by zero', 'summary from message');
is($r->{body}{payload}{source}, 'app.views.divide', 'source from culprit');
ok(PagerDutyTest::wait_sent($node), 'pagerduty_wait() returns true');
is($node->safe_psql('app', q{
	SELECT status || ' ' || http_status || ' ' || attempts || ' ' || (delivered_at IS NOT NULL)
	       || ' ' || (claimed_at IS NULL) || ' ' || (finished_at = delivered_at)
	FROM pagerduty_outbox}),
	'delivered 202 1 true true true', 'the outbox row is delivered, with status, attempts and times');

# The body sent is the stored payload plus the routing key, nothing else.
my $stored = decode_json($node->safe_psql('app', 'SELECT payload FROM pagerduty_outbox'));
my %sent = %{ $r->{body} };
delete $sent{routing_key};
is_deeply(\%sent, $stored, 'the body sent is exactly pagerduty_outbox.payload plus the routing key');

# Acknowledge, resolve, change: each to its URL, each accepted.
$api->clear_requests;
$node->safe_psql('app', qq{SELECT pagerduty_acknowledge('$dedup')});
$node->safe_psql('app', qq{SELECT pagerduty_resolve('$dedup')});
$node->safe_psql('app', q{SELECT pagerduty_change('{"summary": "deployed v1.4.2", "source": "ci", "url": "https://ci.example/builds/220"}')});
$reqs = $api->wait_for_requests(3);
is(scalar @$reqs, 3, 'acknowledge, resolve and change arrived');
my %by_action = map { ($_->{event_action} // '') => $_ } @$reqs;
is($by_action{acknowledge}{path}, '/v2/enqueue', 'acknowledge to /v2/enqueue');
is($by_action{resolve}{path}, '/v2/enqueue', 'resolve to /v2/enqueue');
is($by_action{change}{path}, '/v2/change/enqueue', 'change to the sibling /v2/change/enqueue');
is_deeply([ map { $_->{status} } @$reqs ], [ 202, 202, 202 ], 'all accepted');
is($by_action{resolve}{dedup_key}, $dedup, 'the resolve carries the trigger\'s dedup key');
# acknowledge is enqueued before resolve, with the same dedup key: in order
ok($by_action{acknowledge}{seq} < $by_action{resolve}{seq}, 'acknowledge went before resolve');

# A service's own events URL, and a named service's key.
$api->clear_requests;
$node->safe_psql('app', q{SELECT pagerduty_trigger('{"message": "eu incident"}', NULL, 'eu')});
$node->safe_psql('app', q{SELECT pagerduty_trigger('{"message": "billing incident"}', 'critical', 'billing')});
$reqs = $api->wait_for_requests(2);
my %by_key = map { $_->{routing_key} => $_ } @$reqs;
is($by_key{$k3}{path}, '/eu/v2/enqueue', 'a service with its own events_url is sent there');
is($by_key{$k2}{body}{payload}{severity}, 'critical', 'a named service gets its event, with the given severity');

# Rolled back: never sent.  An event committed after it arrives, so the
# worker has been through the outbox since.
$api->clear_requests;
$node->safe_psql('app', q{
	BEGIN;
	SELECT pagerduty_trigger('{"message": "rolled back"}');
	SELECT pagerduty_trigger('{"message": "rolled back too"}', NULL, 'billing');
	ROLLBACK;});
$node->safe_psql('app', q{
	BEGIN;
	SAVEPOINT a;
	SELECT pagerduty_trigger('{"message": "rolled back to savepoint"}');
	ROLLBACK TO SAVEPOINT a;
	SELECT pagerduty_trigger('{"message": "committed after"}');
	COMMIT;});
$reqs = $api->wait_for_requests(1);
ok(PagerDutyTest::wait_sent($node), 'all sent');
$reqs = $api->requests;
is_deeply([ map { $_->{body}{payload}{summary} } @$reqs ], ['committed after'],
	'only the committed event was sent, none of the rolled-back ones');

# A body of more than 512 KB: custom_details replaced by a note, accepted.
$api->clear_requests;
$node->safe_psql('app', q{SELECT pagerduty_trigger(jsonb_build_object('message', 'huge', 'blob', repeat('x', 700 * 1024)))});
$reqs = $api->wait_for_requests(1);
is($reqs->[0]{status}, 202, 'an event over 512 KB is still sent, and accepted');
ok($reqs->[0]{raw_size} <= 512 * 1024, 'its body is within 512 KB');
like($reqs->[0]{body}{payload}{custom_details}{note}, qr/left out of custom_details/, 'with a note instead of the details');

# Woken at commit, not by the 5 s safety-net poll: 20 single events in a
# row each arrive well within half the poll interval (with polling alone,
# about half of them would not).
$api->clear_requests;
my @latency;
for my $i (1 .. 20)
{
	my $t0 = time();
	$node->safe_psql('app', qq{SELECT pagerduty_trigger('{"message": "latency $i"}')});
	my $got = $api->wait_for_requests($i, timeout => 30);
	push @latency, $got->[-1]{t} - $t0;
}
my @sorted = sort { $a <=> $b } @latency;
note(sprintf('commit-to-arrival over 20 events: median %.1f ms, max %.1f ms',
	1000 * $sorted[9], 1000 * $sorted[-1]));
ok($sorted[-1] < 2.5, 'every event arrived long before the safety-net poll would have sent it');

# No routing key in the server log.
ok(PagerDutyTest::log_has_no_keys($node, $k1, $k2, $k3), 'no routing key in the server log');

$node->stop;
$api->stop;
done_testing();
