# Retention: delivered and failed rows are deleted once older than
# pagerduty.retention; pending rows never are.  A shorter retention applies
# as soon as the configuration is reloaded.
use strict;
use warnings;

use EventsApi;
use PagerDutyTest;
use Test::More;

my $api = EventsApi->start;
my $node = PagerDutyTest::node('retention', $api, conf => <<'CONF');
pagerduty.rate_limit = 0
pagerduty.max_attempts = 1000
CONF
my ($k1, $k2, $k3) = (routing_key(1), routing_key(2), routing_key(3));
PagerDutyTest::add_service($node, 'ok', $k1, default => 1);
PagerDutyTest::add_service($node, 'refused', $k2);
PagerDutyTest::add_service($node, 'down', $k3);
$api->set_rules(
	{ routing_key => $k2, action => 'status', status => 400 },
	{ routing_key => $k3, action => 'status', status => 503 });

$node->safe_psql('app', q{
	SELECT pagerduty_trigger(jsonb_build_object('message', 'ok ' || i)) FROM generate_series(1, 50) AS i;
	SELECT pagerduty_trigger(jsonb_build_object('message', 'refused ' || i), NULL, 'refused') FROM generate_series(1, 5) AS i;
	SELECT pagerduty_trigger('{"message": "still trying"}', NULL, 'down');});
ok(PagerDutyTest::poll($node, q{SELECT count(*) = 55 FROM pagerduty_outbox WHERE status IN ('delivered', 'failed')}),
	'50 delivered, 5 failed');
ok(PagerDutyTest::poll($node, q{SELECT attempts >= 1 FROM pagerduty_outbox WHERE status = 'pending'}),
	'one keeps being retried');

# with the default retention (7 days) nothing goes
is($node->safe_psql('app', q{SELECT count(*) FROM pagerduty_outbox}), '56', 'the default retention keeps them');

# a one-second retention, once they are older than that
ok(PagerDutyTest::poll($node, q{SELECT now() - max(finished_at) > interval '1 s' FROM pagerduty_outbox}),
	'the finished rows are more than a second old');
$node->safe_psql('postgres', q{ALTER SYSTEM SET pagerduty.retention = '1s'});
$node->safe_psql('postgres', q{SELECT pg_reload_conf()});
ok(PagerDutyTest::poll($node, q{SELECT count(*) = 0 FROM pagerduty_outbox WHERE status IN ('delivered', 'failed')}),
	'delivered and failed rows are deleted after a reload');
is($node->safe_psql('app', q{SELECT event->>'message' || ' ' || status FROM pagerduty_outbox}), 'still trying pending',
	'the pending one is kept');

# -1 keeps everything
$node->safe_psql('postgres', q{ALTER SYSTEM SET pagerduty.retention = -1});
$node->safe_psql('postgres', q{SELECT pg_reload_conf()});
ok(PagerDutyTest::poll($node, q{SELECT setting = '-1' FROM pg_settings WHERE name = 'pagerduty.retention'}), 'reloaded');
$node->safe_psql('app', q{SELECT pagerduty_trigger('{"message": "kept forever"}')});
ok(PagerDutyTest::poll($node, q{SELECT count(*) = 1 FROM pagerduty_outbox WHERE status = 'delivered'}), 'delivered');
ok(PagerDutyTest::poll($node, q{SELECT now() - max(finished_at) > interval '1 s' FROM pagerduty_outbox}), 'a second later');
$node->safe_psql('postgres', q{SELECT pg_reload_conf()});
# a reload makes the worker purge at once; wait until it has been through a
# loop since (an event it delivers), then look
$node->safe_psql('app', q{SELECT pagerduty_trigger('{"message": "after the reload"}')});
ok(PagerDutyTest::poll($node, q{SELECT count(*) = 2 FROM pagerduty_outbox WHERE status = 'delivered'}),
	'retention -1 keeps delivered rows');

$node->stop;
done_testing();
