# Failures: 5xx, timeouts and dropped connections are retried with backoff
# up to pagerduty.max_attempts; 400 fails at once with PagerDuty's errors;
# 429 pauses only that routing key, honouring Retry-After; failed events
# can be put back with pagerduty_retry().
use strict;
use warnings;

use EventsApi;
use PagerDutyTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $api = EventsApi->start;
my $node = PagerDutyTest::node('failures', $api, conf => <<'CONF');
pagerduty.max_attempts = 3
pagerduty.request_timeout = '1s'
pagerduty.connect_timeout = '1s'
CONF
my @k = map { routing_key($_) } 0 .. 9;
PagerDutyTest::add_service($node, "s$_", $k[$_], default => $_ == 0) for 0 .. 7;

sub row
{
	my ($dedup, $cols) = @_;
	return $node->safe_psql('app', "SELECT $cols FROM pagerduty_outbox WHERE dedup_key = '$dedup'");
}

sub trigger
{
	my ($service, $dedup) = @_;
	return $node->safe_psql('app',
		"SELECT pagerduty_trigger('{\"message\": \"$dedup\"}', NULL, '$service', '$dedup')");
}

sub wait_status
{
	my ($dedup, $status) = @_;
	return PagerDutyTest::poll($node,
		"SELECT status = '$status' FROM pagerduty_outbox WHERE dedup_key = '$dedup'");
}

# 5xx twice, then accepted: retried, delivered on the third attempt.
$api->set_rules({ routing_key => $k[1], action => 'status', status => 500, times => 2 });
trigger('s1', 'five-hundred');
ok(wait_status('five-hundred', 'delivered'), '5xx is retried until accepted');
is(row('five-hundred', q{attempts || ' ' || http_status || ' ' || coalesce(last_error, '-')}),
	'3 202 -', 'three attempts; the last status and no error once delivered');
my $reqs = PagerDutyTest::requests_for($api, $k[1]);
is_deeply([ map { $_->{status} } @$reqs ], [ 500, 500, 202 ], 'the stand-in saw 500, 500, 202');
ok($reqs->[1]{t} - $reqs->[0]{t} >= 0.9, 'the first retry waited (backoff of 1 to 2 s)');
ok($reqs->[2]{t} - $reqs->[1]{t} >= 1.9, 'the second waited longer (2 to 4 s)');

# 5xx every time: failed after max_attempts, with the reason.
$api->set_rules({ routing_key => $k[2], action => 'status', status => 503 });
trigger('s2', 'always-503');
ok(wait_status('always-503', 'failed'), 'an event that keeps failing is marked failed');
is(row('always-503', q{attempts || ' ' || http_status}), '3 503', 'after pagerduty.max_attempts = 3 attempts');
like(row('always-503', 'last_error'), qr/^gave up after 3 attempts: HTTP 503: internal error/,
	'last_error says why');
is(scalar @{ PagerDutyTest::requests_for($api, $k[2]) }, 3, 'three requests were made');

# pagerduty_retry() puts it back; it is delivered once PagerDuty is well.
$api->clear_rules;
is($node->safe_psql('app', 'SELECT pagerduty_retry()'), '1', 'pagerduty_retry() puts the failed event back');
ok(wait_status('always-503', 'delivered'), 'and it is delivered');
is(row('always-503', 'attempts'), '1', 'with a fresh count of attempts');

# 400: failed at once, PagerDuty's errors kept.
$api->set_rules({ routing_key => $k[3], action => 'status', status => 400,
	body => { status => 'invalid event', message => 'Event object is invalid',
		errors => [ "'payload.summary' is missing", "'payload.severity' is invalid" ] } });
trigger('s3', 'bad-request');
ok(wait_status('bad-request', 'failed'), '400 fails the event');
is(row('bad-request', q{attempts || ' ' || http_status}), '1 400', 'at once, without retrying');
is(row('bad-request', 'last_error'),
	"HTTP 400: Event object is invalid: 'payload.summary' is missing; 'payload.severity' is invalid",
	'with PagerDuty\'s message and errors in last_error');
$api->clear_rules;

# A request that takes longer than request_timeout is retried.
$api->set_rules({ routing_key => $k[4], action => 'slow', delay => 3, times => 1 });
trigger('s4', 'slow');
ok(wait_status('slow', 'delivered'), 'a timed-out request is retried and delivered');
is(row('slow', 'attempts'), '2', 'on the second attempt');

# A dropped connection is retried.  (libcurl itself retries a request once
# on a fresh connection when a reused one is dropped, so drop twice.)
$api->set_rules({ routing_key => $k[5], action => 'drop', times => 2 });
trigger('s5', 'dropped');
ok(wait_status('dropped', 'delivered'), 'a dropped connection is retried and delivered');
is(row('dropped', 'attempts'), '2', 'on the second attempt');

# Nobody listening: retried, then failed with the network error.
$node->safe_psql('app', "SELECT pagerduty_add_service('closed', '$k[8]', false, 'http://127.0.0.1:9/v2/enqueue')");
trigger('closed', 'refused');
ok(wait_status('refused', 'failed'), 'connection refused: retried, then failed');
like(row('refused', 'last_error'), qr/^gave up after 3 attempts: Couldn't connect to server/,
	'last_error has the network error');
is(row('refused', q{coalesce(http_status::text, 'none')}), 'none', 'and no HTTP status');

# The routing key is read at send time: a key rotated while an event waits
# for its retry is the one used.
$api->set_rules({ routing_key => $k[6], action => 'status', status => 502, times => 1 });
trigger('s6', 'rotated');
ok(PagerDutyTest::poll($node, q{SELECT attempts = 1 AND status = 'pending' AND claimed_at IS NULL FROM pagerduty_outbox WHERE dedup_key = 'rotated'}),
	'first attempt failed');
$node->safe_psql('app', "UPDATE pagerduty_services SET routing_key = '$k[9]' WHERE name = 's6'");
ok(wait_status('rotated', 'delivered'), 'delivered on retry');
is(PagerDutyTest::requests_for($api, $k[9])->[0]{dedup_key}, 'rotated', 'with the new routing key');

# A service removed while its event waits: failed, saying so.
$api->set_rules({ routing_key => $k[7], action => 'status', status => 502, times => 1 });
trigger('s7', 'orphan');
ok(PagerDutyTest::poll($node, q{SELECT attempts = 1 AND status = 'pending' AND claimed_at IS NULL FROM pagerduty_outbox WHERE dedup_key = 'orphan'}),
	'first attempt failed');
$node->safe_psql('app', "DELETE FROM pagerduty_services WHERE name = 's7'");
ok(wait_status('orphan', 'failed'), 'the event of a removed service fails');
is(row('orphan', 'last_error'), 'service "s7" no longer exists', 'saying why');
$api->clear_rules;

# 429: the key pauses for Retry-After; other keys go on meanwhile.
$api->clear_requests;
$api->set_rules({ routing_key => $k[1], action => 'status', status => 429, retry_after => '3', times => 1 });
trigger('s1', 'throttled-1');
ok(PagerDutyTest::poll($node, q{SELECT http_status = 429 FROM pagerduty_outbox WHERE dedup_key = 'throttled-1'}),
	'PagerDuty answered 429');
trigger('s1', 'throttled-2');
trigger('s2', 'other-key');
ok(wait_status('other-key', 'delivered'), 'another routing key is delivered during the pause');
is(row('throttled-2', 'status'), 'pending', 'while the paused key\'s next event waits');
ok(wait_status('throttled-1', 'delivered'), 'the throttled event is delivered after the pause');
ok(wait_status('throttled-2', 'delivered'), 'and so is the next one');
$reqs = PagerDutyTest::requests_for($api, $k[1]);
is_deeply([ map { $_->{status} } @$reqs ], [ 429, 202, 202 ], 'one 429, then accepted');
ok($reqs->[1]{t} - $reqs->[0]{t} >= 2.9, 'no request for that key before Retry-After (3 s) passed');
my $other = PagerDutyTest::requests_for($api, $k[2])->[0];
ok($other->{t} < $reqs->[1]{t}, 'the other key was sent before the pause ended');
is(row('throttled-1', 'attempts'), '1', 'a 429 does not use up an attempt');

# 429 without Retry-After: a default pause (5 s), then delivered.
$api->clear_requests;
$api->set_rules({ routing_key => $k[3], action => 'status', status => 429, times => 1 });
trigger('s3', 'throttled-no-header');
ok(wait_status('throttled-no-header', 'delivered'), '429 without Retry-After: delivered after a pause');
$reqs = PagerDutyTest::requests_for($api, $k[3]);
ok($reqs->[1]{t} - $reqs->[0]{t} >= 4.9, 'the default pause is 5 s');

# A failing pagerduty_add_service() call does not bring its key into the
# log as the STATEMENT of the error.
my ($ret, $out, $err) = $node->psql('app', "SELECT pagerduty_add_service('second-default', '$k[9]', true)");
like($err, qr/is already the default service/, 'a second default service is refused');

# The server log names events and services, never a routing key.
my $log = slurp_file($node->logfile);
like($log, qr/event \d+ for service "s2" failed: gave up after 3 attempts/, 'a failed event is logged');
like($log, qr/throttled routing key \.\.\.0001/, 'a throttled key is logged by its last 4 characters');
ok(PagerDutyTest::log_has_no_keys($node, @k), 'no routing key in the server log');

$node->stop;
done_testing();
