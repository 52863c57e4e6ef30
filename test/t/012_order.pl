# Order: events with the same service and dedup key go out one at a time,
# in enqueue order; a resolve never overtakes its trigger, even while the
# trigger is being retried.  Other dedup keys are not held up.
use strict;
use warnings;

use EventsApi;
use PagerDutyTest;
use Test::More;

my $api = EventsApi->start;
my $node = PagerDutyTest::node('order', $api, conf => "pagerduty.rate_limit = 0\n");
my ($k1, $k2, $k3) = (routing_key(1), routing_key(2), routing_key(3));
PagerDutyTest::add_service($node, 'db', $k1, default => 1);
PagerDutyTest::add_service($node, 'web', $k2);
PagerDutyTest::add_service($node, 'batch', $k3);

# The trigger fails twice (503) and is retried; the acknowledge and the
# resolve enqueued right after it wait for it.
$api->set_rules({ routing_key => $k1, action => 'status', status => 503, times => 2 });
$node->safe_psql('app', q{
	SELECT pagerduty_trigger('{"message": "disk full"}', NULL, NULL, 'incident-1');
	SELECT pagerduty_acknowledge('incident-1');
	SELECT pagerduty_resolve('incident-1');});
ok(PagerDutyTest::poll($node, q{SELECT count(*) = 3 FROM pagerduty_outbox WHERE status = 'delivered'}),
	'all three delivered');
my @seen = map { "$_->{dedup_key} $_->{event_action} $_->{status}" } @{ PagerDutyTest::requests_for($api, $k1) };
is_deeply(\@seen,
	[ 'incident-1 trigger 503', 'incident-1 trigger 503', 'incident-1 trigger 202',
	  'incident-1 acknowledge 202', 'incident-1 resolve 202' ],
	'the acknowledge and the resolve went only after the trigger was accepted, in order');

# While a trigger waits for its retry, another dedup key of the same service
# is not held up.
$api->clear_requests;
$api->set_rules({ routing_key => $k1, action => 'status', status => 503, times => 1 });
$node->safe_psql('app', q{SELECT pagerduty_trigger('{"message": "flaky"}', NULL, NULL, 'incident-2')});
ok(PagerDutyTest::poll($node, q{SELECT attempts = 1 AND status = 'pending' AND claimed_at IS NULL FROM pagerduty_outbox WHERE dedup_key = 'incident-2'}),
	'the first trigger failed and waits for its retry');
$node->safe_psql('app', q{SELECT pagerduty_trigger('{"message": "other"}', NULL, NULL, 'incident-3')});
ok(PagerDutyTest::poll($node, q{SELECT count(*) = 2 FROM pagerduty_outbox WHERE dedup_key IN ('incident-2', 'incident-3') AND status = 'delivered'}),
	'both delivered');
@seen = map { "$_->{dedup_key} $_->{status}" } @{ PagerDutyTest::requests_for($api, $k1) };
is_deeply(\@seen, [ 'incident-2 503', 'incident-3 202', 'incident-2 202' ],
	'the other dedup key went while the first waited for its retry');

# Many updates of one incident: sent one at a time, in enqueue order, also
# when enqueued by many transactions.
$api->clear_requests;
$node->safe_psql('app', q{
	SELECT pagerduty_trigger(jsonb_build_object('message', 'update ' || i, 'n', i), NULL, 'web', 'busy-incident')
	FROM generate_series(1, 40) AS i;});
$node->safe_psql('app', qq{SELECT pagerduty_trigger('{"message": "update $_", "n": $_}', NULL, 'web', 'busy-incident')})
	for 41 .. 60;
$node->safe_psql('app', q{SELECT pagerduty_resolve('busy-incident', 'web')});
ok(PagerDutyTest::wait_sent($node), 'all sent');
my @n = map { $_->{event_action} eq 'resolve' ? 'resolve' : $_->{body}{payload}{custom_details}{n} }
	@{ PagerDutyTest::requests_for($api, $k2) };
is_deeply(\@n, [ 1 .. 60, 'resolve' ], 'sixty updates and the resolve arrived in enqueue order');

# The same dedup key on two services is two queues: one failing does not
# hold the other.
$api->clear_requests;
$api->set_rules({ routing_key => $k1, action => 'status', status => 503, times => 1 });
$node->safe_psql('app', q{
	SELECT pagerduty_trigger('{"message": "shared key"}', NULL, 'db', 'shared');
	SELECT pagerduty_trigger('{"message": "shared key"}', NULL, 'batch', 'shared');});
ok(PagerDutyTest::poll($node, q{SELECT count(*) = 2 FROM pagerduty_outbox WHERE dedup_key = 'shared' AND status = 'delivered'}),
	'both delivered');
my $batch = PagerDutyTest::requests_for($api, $k3)->[0];
my @db = @{ PagerDutyTest::requests_for($api, $k1) };
ok($batch->{t} < $db[-1]{t}, 'the other service\'s event did not wait for the retry');

# A trigger that PagerDuty refused (400, failed for good) does not block its
# resolve forever: the resolve goes, and pagerduty_retry() will not resend the
# old trigger after it (that would reopen the incident).
$api->clear_requests;
$api->set_rules({ routing_key => $k3, action => 'status', status => 400, times => 1 });
$node->safe_psql('app', q{
	SELECT pagerduty_trigger('{"message": "refused"}', NULL, 'batch', 'refused');
	SELECT pagerduty_resolve('refused', 'batch');});
ok(PagerDutyTest::poll($node, q{SELECT string_agg(event_action || ':' || status, ' ' ORDER BY id) = 'trigger:failed resolve:delivered' FROM pagerduty_outbox WHERE dedup_key = 'refused'}),
	'the refused trigger failed, its resolve was delivered');
my ($ret, $out, $err) = $node->psql('app', 'SELECT pagerduty_retry()');
is($out, '0', 'pagerduty_retry() does not put the old trigger back');
like($err, qr/1 failed event was not put back/, 'and says why');

$node->stop;
done_testing();
