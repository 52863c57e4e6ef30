# Rate limit: at most pagerduty.rate_limit events in any minute per routing
# key; events over the limit wait (deferred in the outbox, not failed) while
# other keys go on.  Settings are reloaded on SIGHUP.
use strict;
use warnings;

use EventsApi;
use PagerDutyTest;
use Test::More;

my $api = EventsApi->start;
my $node = PagerDutyTest::node('ratelimit', $api, conf => "pagerduty.rate_limit = 5\n");
my ($k1, $k2) = (routing_key(1), routing_key(2));
PagerDutyTest::add_service($node, 'busy', $k1, default => 1);
PagerDutyTest::add_service($node, 'quiet', $k2);

# eight events for one key, two for another
$node->safe_psql('app', q{
	SELECT pagerduty_trigger(jsonb_build_object('message', 'busy ' || i), NULL, 'busy', 'busy-' || i)
	FROM generate_series(1, 8) AS i;
	SELECT pagerduty_trigger(jsonb_build_object('message', 'quiet ' || i), NULL, 'quiet', 'quiet-' || i)
	FROM generate_series(1, 2) AS i;});

my $reqs = $api->wait_for_requests(7);
is(scalar @{ PagerDutyTest::requests_for($api, $k1) }, 5, 'five events of the busy key went at once');
is(scalar @{ PagerDutyTest::requests_for($api, $k2) }, 2, 'the other key was not held up');
ok(PagerDutyTest::poll($node, q{SELECT count(*) = 3 FROM pagerduty_outbox
	WHERE service = 'busy' AND status = 'pending' AND attempts = 0
	AND next_attempt_at > now() + interval '40 s'}),
	'the other three wait in the outbox for the minute to pass, without using an attempt');
is($node->safe_psql('app', q{SELECT pagerduty_wait('0')}), 't',
	'deferred events are not due, so pagerduty_wait() does not wait for them');

# they go once the first sends leave the one-minute window
ok(PagerDutyTest::poll($node, q{SELECT count(*) = 10 FROM pagerduty_outbox WHERE status = 'delivered'}),
	'all ten delivered in the end');
my @busy = @{ PagerDutyTest::requests_for($api, $k1) };
is(scalar @busy, 8, 'each busy event sent once');
is_deeply([ map { $_->{status} } @busy ], [ (202) x 8 ], 'all accepted');
my $worst = 0;
for my $i (0 .. $#busy)
{
	my $in_window = grep { $_->{t} >= $busy[$i]{t} && $_->{t} < $busy[$i]{t} + 60 } @busy;
	$worst = $in_window if $in_window > $worst;
}
is($worst, 5, 'no 60-second window holds more than 5 events of the key');

# SIGHUP: the limit off, the events of the same key go at once
$node->safe_psql('postgres', q{ALTER SYSTEM SET pagerduty.rate_limit = 0});
$node->safe_psql('postgres', q{SELECT pg_reload_conf()});
ok(PagerDutyTest::poll($node, q{SELECT setting = '0' FROM pg_settings WHERE name = 'pagerduty.rate_limit'}),
	'the setting is reloaded');
$api->clear_requests;
# the worker reads the setting at its next wake-up; the event that wakes it
# is the first of the batch below
$node->safe_psql('app', q{
	SELECT pagerduty_trigger(jsonb_build_object('message', 'after reload ' || i), NULL, 'busy', 'reload-' || i)
	FROM generate_series(1, 20) AS i;});
ok(PagerDutyTest::wait_sent($node), 'all sent');
is($node->safe_psql('app', q{SELECT count(*) FROM pagerduty_outbox WHERE dedup_key LIKE 'reload-%' AND status = 'delivered'}),
	'20', 'twenty events of one key in well under a minute once the limit is off');

# SIGHUP also moves where events go (a superuser's setting)
my $api2 = EventsApi->start;
$node->safe_psql('postgres', "ALTER SYSTEM SET pagerduty.events_url = '" . $api2->url . "'");
$node->safe_psql('postgres', q{SELECT pg_reload_conf()});
ok(PagerDutyTest::poll($node, "SELECT setting = '" . $api2->url . "' FROM pg_settings WHERE name = 'pagerduty.events_url'"),
	'the new URL is loaded');
$node->safe_psql('app', q{SELECT pagerduty_trigger('{"message": "to the new URL"}')});
my $moved = $api2->wait_for_requests(1);
is($moved->[0]{body}{payload}{summary}, 'to the new URL', 'after a reload, events go to the new events_url');

$node->stop;
done_testing();
