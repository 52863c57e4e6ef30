# Where users call it from, delivered for real: the README's recipes run as
# written (an error-log table with a WHEN rule, fan-out to two services, pg_cron
# checks, resolving from SQL), pagerduty_check() sequences, a role with no
# right on the extension paging through an insert, and scheduled jobs of the
# real pg_cron that trigger and then resolve an incident by themselves.
use strict;
use warnings;

use EventsApi;
use PagerDutyTest;
use PostgreSQL::Test::Utils;
use Test::More;

# The SQL blocks of the README marked "<!-- recipe: NAME -->".
my %recipe;
my $readme = slurp_file('README.md');
while ($readme =~ /<!-- recipe: (\S+) -->\s*```sql\n(.*?)```/gs)
{
	$recipe{$1} = $2;
}
ok(exists $recipe{$_}, "the README has the recipe $_")
  for qw(quick-start error-log fan-out cron-replication-lag cron-long-transactions resolve);

my $api = EventsApi->start;
my $node = PagerDutyTest::node('integrations', $api, preload => 'pagerduty,pg_cron', conf => <<'CONF');
cron.database_name = 'app'
cron.use_background_workers = on
max_worker_processes = 20
cluster_name = 'db-1'
CONF
$node->safe_psql('app', 'CREATE EXTENSION pg_cron');

# the keys the README uses
my $db_key = 'e93facc04764012d7bfb002500d5d1a6';
my $payments_key = '1f2e3d4c5b6a79880f1e2d3c4b5a6978';

sub sent
{
	my ($key, $filter) = @_;
	return [ grep { $filter->($_) } @{ PagerDutyTest::requests_for($api, $key) } ];
}

sub summary { return $_[0]{body}{payload}{summary} // '' }

# Quick start: a service, a trigger, its preview.
$node->safe_psql('app', $recipe{'quick-start'});
ok(PagerDutyTest::wait_sent($node), 'the quick start\'s trigger is sent');
my $quick = sent($db_key, sub { summary($_[0]) eq 'disk 95% full on db-1' });
is(scalar @$quick, 1, 'and arrives once');
is($quick->[0]{status}, 202, 'accepted');

# An error-log table with a WHEN rule: error and fatal rows page, info does not.
$node->safe_psql('app', $recipe{'error-log'});
ok(PagerDutyTest::wait_sent($node), 'the error-log recipe\'s pages are sent');
my %page = map { summary($_) => $_ } @{ sent($db_key, sub { 1 }) };
ok(exists $page{'payment declined: card expired'}, 'the error row paged');
ok(exists $page{'cannot write to disk'}, 'the fatal row paged');
ok(!exists $page{'user logged in'}, 'the info row did not');
is($page{'payment declined: card expired'}{body}{payload}{severity}, 'error', 'severity error from level error');
is($page{'cannot write to disk'}{body}{payload}{severity}, 'critical', 'severity critical from level fatal');
is($page{'payment declined: card expired'}{body}{payload}{source}, 'billing.charge', 'source from the culprit column');
is_deeply($page{'payment declined: card expired'}{body}{links}, [ { href => 'https://app.example.com/errors/1' } ],
	'the url column as a link');
is($page{'cannot write to disk'}{body}{payload}{custom_details}{level}, 'fatal', 'the row is the custom details');
is_deeply([ map { $_->{errors} } values %page ], [ map { [] } values %page ], 'every page passed the API\'s checks');

# A role that may only insert into the error log still pages.
$node->safe_psql('app', q{
	CREATE ROLE app_logger;
	GRANT INSERT ON app_errors TO app_logger;
	GRANT USAGE ON SEQUENCE app_errors_id_seq TO app_logger;});
$node->safe_psql('app', q{
	SET ROLE app_logger;
	INSERT INTO app_errors (level, message, culprit) VALUES ('error', 'inserted by app_logger', 'jobs.run');});
ok(PagerDutyTest::wait_sent($node), 'sent');
is(scalar @{ sent($db_key, sub { summary($_[0]) eq 'inserted by app_logger' }) }, 1,
	'an insert by a role with no right on the extension pages');
my ($ret, $out, $err) = $node->psql('app', q{SET ROLE app_logger; SELECT count(*) FROM pagerduty_outbox});
like($err, qr/permission denied for table pagerduty_outbox/, 'that role cannot read the outbox');

# Fan-out: one fatal billing row, one event to each service.
$node->safe_psql('app', $recipe{'fan-out'});
ok(PagerDutyTest::wait_sent($node), 'the fan-out recipe\'s pages are sent');
my $to_payments = sent($payments_key, sub { summary($_[0]) eq 'ledger out of balance' });
my $to_db = sent($db_key, sub { summary($_[0]) eq 'ledger out of balance' && $_[0]{body}{payload}{severity} eq 'critical' });
is(scalar @$to_payments, 1, 'the payments service got the event once');
ok(@$to_db >= 1, 'the database service got it too');

# Resolving from SQL: trigger, acknowledge, resolve, in that order.
$node->safe_psql('app', $recipe{resolve});
ok(PagerDutyTest::wait_sent($node), 'the resolve recipe is sent');
is_deeply([ map { $_->{event_action} } @{ sent($db_key, sub { ($_[0]{dedup_key} // '') eq 'nightly-export' }) } ],
	[ 'trigger', 'acknowledge', 'resolve' ], 'trigger, acknowledge and resolve arrive in order');

# pagerduty_check(), called five times: one trigger, one resolve, one key.
$node->safe_psql('app', q{SELECT pagerduty_add_service('checks', 'ChecksKey00000000000000000000001')});
my @results = map {
	$node->safe_psql('app', "SELECT pagerduty_check('disk_space', $_, '{\"summary\": \"disk space low\"}', NULL, 'checks')")
} qw(false true true false false);
is_deeply(\@results, [qw(unchanged triggered unchanged resolved unchanged)], 'pagerduty_check() results');
ok(PagerDutyTest::wait_sent($node), 'sent');
my $checks = PagerDutyTest::requests_for($api, 'ChecksKey00000000000000000000001');
is_deeply([ map { $_->{event_action} } @$checks ], [ 'trigger', 'resolve' ], 'exactly one trigger and one resolve were sent');
is($checks->[0]{dedup_key}, $checks->[1]{dedup_key}, 'with the same dedup key');
like($checks->[0]{dedup_key}, qr/^pg-check:[0-9a-f]{8}:app:disk_space$/, 'derived from the check\'s name');

# pg_cron: the README's two checks, and a check whose condition the test
# flips, run by the real pg_cron every minute.
$node->safe_psql('app', $recipe{'cron-replication-lag'});
$node->safe_psql('app', $recipe{'cron-long-transactions'});
$node->safe_psql('app', q{
	CREATE TABLE health (failing boolean NOT NULL);
	INSERT INTO health VALUES (true);
	SELECT cron.schedule('flip-check', '* * * * *',
		$$SELECT pagerduty_check('nightly_job', (SELECT failing FROM health), '{"summary": "the nightly job is failing"}', NULL, 'checks')$$);});
is($node->safe_psql('app', q{SELECT string_agg(jobname, ',' ORDER BY jobname) FROM cron.job}),
	'flip-check,pagerduty-long-transactions,pagerduty-replication-lag', 'three jobs scheduled');

my $nightly = sub { ($_[0]{dedup_key} // '') =~ /:nightly_job$/ };
my $got = $api->wait_for_requests(1, timeout => 150, filter => $nightly);
is(scalar @$got, 1, 'the scheduled check triggered');
is($got->[0]{event_action}, 'trigger', 'with a trigger event');
ok($node->poll_query_until('app', q{SELECT count(*) = 3 FROM (SELECT DISTINCT jobid FROM cron.job_run_details WHERE status = 'succeeded') s}),
	'all three jobs ran and succeeded (the README\'s checks find nothing wrong here)');
is($node->safe_psql('app', q{SELECT count(*) FROM cron.job_run_details WHERE status <> 'succeeded'}), '0', 'no job failed');

# the condition clears: the next run resolves the same incident
$node->safe_psql('app', q{UPDATE health SET failing = false});
$got = $api->wait_for_requests(2, timeout => 150, filter => $nightly);
is_deeply([ map { $_->{event_action} } @$got ], [ 'trigger', 'resolve' ], 'the next run resolved it, by itself');
is($got->[1]{dedup_key}, $got->[0]{dedup_key}, 'the same incident');
is($node->safe_psql('app', q{SELECT failing FROM pagerduty_checks WHERE name = 'nightly_job'}), 'f', 'the check is no longer failing');

# A schema-only dump restores, although its triggers name services that a
# schema-only dump does not contain.  (The error-log table only: pg_cron
# cannot be created in a second database.)
$node->safe_psql('postgres', 'CREATE DATABASE app_schema');
$node->safe_psql('app_schema', 'CREATE EXTENSION pagerduty');
my $dump = PostgreSQL::Test::Utils::tempdir() . '/schema.sql';
$node->command_ok([ 'pg_dump', '-s', '-t', 'app_errors', '-d', $node->connstr('app'), '-f', $dump ],
	'pg_dump -s of the error-log table');
$node->command_ok([ 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-q', '-d', $node->connstr('app_schema'), '-f', $dump ],
	'restores into an empty database, alert triggers and all');
is($node->safe_psql('app_schema', q{SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'app_errors_page%'}), '2',
	'with both alert triggers');

ok(PagerDutyTest::log_has_no_keys($node, $db_key, $payments_key), 'no routing key in the server log');
$node->stop;
done_testing();
