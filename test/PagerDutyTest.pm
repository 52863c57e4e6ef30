# PagerDutyTest - what the TAP tests share: a PostgreSQL node with the
# library preloaded, the extension created in database "app", pointed at a
# local Events API stand-in (EventsApi.pm).
#
#   my $api  = EventsApi->start;
#   my $node = PagerDutyTest::node('main', $api, conf => "pagerduty.max_attempts = 3\n");
#   PagerDutyTest::add_service($node, 'db', routing_key(1), default => 1);
#   $node->safe_psql('app', q{SELECT pagerduty_trigger('{"message": "m"}')});
#   PagerDutyTest::wait_sent($node);

package PagerDutyTest;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

our @EXPORT = qw(routing_key);

# A routing key of the right form, distinct for each number.
sub routing_key
{
	my ($n) = @_;
	return sprintf('TestKey%025d', $n);
}

# Create and start a node: library preloaded, worker serving "app", events
# going to the stand-in.  Options: conf (more postgresql.conf lines),
# preload (the shared_preload_libraries value), init (options for init),
# no_db (do not create the database and the extension).
sub node
{
	my ($name, $api, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opts{init} // {} });
	my $preload = $opts{preload} // 'pagerduty';
	my $url = $api ? $api->url : 'http://127.0.0.1:9/v2/enqueue';
	$node->append_conf('postgresql.conf', <<"EOF");
shared_preload_libraries = '$preload'
pagerduty.database = 'app'
pagerduty.events_url = '$url'
log_line_prefix = '%m [%p] %b '
EOF
	$node->append_conf('postgresql.conf', $opts{conf}) if $opts{conf};
	$node->start;
	unless ($opts{no_db})
	{
		$node->safe_psql('postgres', 'CREATE DATABASE app');
		$node->safe_psql('app', 'CREATE EXTENSION pagerduty');
	}
	return $node;
}

sub add_service
{
	my ($node, $name, $key, %opts) = @_;
	my $default = $opts{default} ? 'true' : 'false';
	my $url = defined $opts{events_url} ? "'$opts{events_url}'" : 'NULL';
	$node->safe_psql('app',
		"SELECT pagerduty_add_service('$name', '$key', $default, $url)");
}

# Wait until the worker has sent everything that is due (pagerduty_wait()).
sub wait_sent
{
	my ($node, $timeout) = @_;
	$timeout //= 60;
	return $node->safe_psql('app', "SELECT pagerduty_wait('$timeout s')") eq 't';
}

# Poll a query until it returns the expected value (default 't').
sub poll
{
	my ($node, $query, $expected) = @_;
	return $node->poll_query_until('app', $query, $expected // 't');
}

# The requests the stand-in recorded that match a routing key.
sub requests_for
{
	my ($api, $key) = @_;
	return [ grep { ($_->{routing_key} // '') eq $key } @{ $api->requests } ];
}

# The pid of the delivery worker, or '' if it is not running.
sub worker_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		q{SELECT coalesce(max(pid)::text, '') FROM pg_stat_activity WHERE backend_type = 'pagerduty worker'});
}

# No routing key of the given ones appears in the server log, in any line
# the extension or the server wrote.  The test framework's log_statement =
# all logs every statement the tests send, pagerduty_add_service() calls
# included: those lines are left out (README: turn log_statement off when
# adding a key).  The STATEMENT lines of errors are kept: an error in
# pagerduty_add_service() must not bring its call into the log.
sub log_has_no_keys
{
	my ($node, @keys) = @_;
	my $log = join "\n", grep { !/LOG:  statement: / }
	  split /\n/, slurp_file($node->logfile);
	for my $key (@keys)
	{
		return 0 if index($log, $key) >= 0;
	}
	return 1;
}

1;
