# EventsApi - start and drive the PagerDuty Events API stand-in (test/events_api.py)
# from the TAP tests.
#
#   my $api = EventsApi->start;               # or start(log => "/path/events.jsonl")
#   ... point the extension at $api->url ...
#   $api->set_rules({ action => 'status', status => 500, times => 2 });
#   my $reqs = $api->wait_for_requests(3, filter => sub { $_[0]{status} == 202 });
#   $api->stop;                               # also done by DESTROY and at END
#
# Each recorded request is a hashref with seq, t, path, routing_key, event_action,
# dedup_key, body, raw_size, status, errors and action (see events_api.py).

package EventsApi;

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken);
use Time::HiRes qw(sleep time);

my $SCRIPT = File::Spec->catfile(dirname(File::Spec->rel2abs(__FILE__)), 'events_api.py');
my $JSON = JSON::PP->new->utf8->canonical;

# Servers still running, so END can stop them if their objects were never destroyed.
my %running;

# Start a stand-in on a free loopback port and wait (up to 30 s) until it listens.
# Options: log => file for the JSON-lines request log (default: a temporary file).
sub start
{
	my ($class, %opts) = @_;
	my $dir = tempdir('events_api_XXXXXX', TMPDIR => 1, CLEANUP => 1);
	my $port_file = "$dir/port";
	my $log = $opts{log} // "$dir/requests.jsonl";
	my @cmd = ('python3', $SCRIPT, '--port', '0', '--port-file', $port_file, '--log', $log);

	my $pid = fork // die "EventsApi: fork failed: $!";
	if ($pid == 0)
	{
		# Child: keep "listening on PORT" off the TAP stream; stderr stays visible.
		open STDOUT, '>', "$dir/stdout" or POSIX::_exit(126);
		exec @cmd or POSIX::_exit(127);
	}

	my $self = bless {
		pid => $pid,
		owner => $$,
		dir => $dir,
		log => $log,
		http => HTTP::Tiny->new(timeout => 30, keep_alive => 1),
	}, $class;
	$running{$pid} = $self;
	weaken($running{$pid});

	my $deadline = time() + 30;
	until (-s $port_file)
	{
		if (waitpid($pid, WNOHANG) == $pid)
		{
			delete $self->{pid};
			die "EventsApi: @cmd exited with status $? before listening\n";
		}
		if (time() > $deadline)
		{
			$self->stop;
			die "EventsApi: @cmd did not write $port_file within 30 s\n";
		}
		sleep 0.02;
	}
	open my $fh, '<', $port_file or die "EventsApi: cannot read $port_file: $!";
	chomp($self->{port} = <$fh>);
	close $fh;
	return $self;
}

sub pid  { return $_[0]{pid} }
sub port { return $_[0]{port} }
sub base { return "http://127.0.0.1:$_[0]{port}" }
sub url  { return $_[0]->base . '/v2/enqueue' }
sub change_url { return $_[0]->base . '/v2/change/enqueue' }
sub log_file { return $_[0]{log} }

# Replace the fault-injection rules (hashrefs: routing_key, path, action, status,
# retry_after, body, delay, times).  Dies if the stand-in rejects them.
sub set_rules
{
	my ($self, @rules) = @_;
	# JSON::PP encodes a scalar last used as a string as a JSON string; the stand-in
	# wants numbers for these fields, so make them numbers (and retry_after a string).
	for my $rule (@rules)
	{
		$rule = {%$rule};
		for my $key (grep { exists $rule->{$_} } qw(status delay times))
		{
			$rule->{$key} = 0 + $rule->{$key};
		}
		$rule->{retry_after} = "$rule->{retry_after}" if exists $rule->{retry_after};
	}
	return $self->_call('PUT', '/_control/rules', { rules => \@rules });
}

sub clear_rules { return $_[0]->_call('DELETE', '/_control/rules') }

# Recorded event requests in arrival order (only seq > $opts{since} if given).
sub requests
{
	my ($self, %opts) = @_;
	my $query = defined $opts{since} ? '?since=' . int($opts{since}) : '';
	return $self->_call('GET', "/_control/requests$query");
}

sub clear_requests { return $_[0]->_call('DELETE', '/_control/requests') }

sub stats { return $_[0]->_call('GET', '/_control/stats') }

# Poll every 50 ms until at least $n recorded requests pass $opts{filter} (a sub given
# each request hashref; default: all), or $opts{timeout} seconds (default 60) pass.
# Returns an arrayref of the matching requests either way; the caller asserts on it.
sub wait_for_requests
{
	my ($self, $n, %opts) = @_;
	my $filter = $opts{filter} // sub { 1 };
	my $deadline = time() + ($opts{timeout} // 60);
	while (1)
	{
		my @matching = grep { $filter->($_) } @{ $self->requests };
		return \@matching if @matching >= $n || time() >= $deadline;
		sleep 0.05;
	}
}

# Stop the server (SIGTERM, then SIGKILL if it has not exited after 10 s) and reap it.
sub stop
{
	my ($self) = @_;
	my $pid = delete $self->{pid};
	return unless $pid && $self->{owner} == $$;
	delete $running{$pid};
	local ($?, $!);
	kill 'TERM', $pid;
	my $deadline = time() + 10;
	while (waitpid($pid, WNOHANG) == 0)
	{
		if (time() > $deadline)
		{
			kill 'KILL', $pid;
			waitpid($pid, 0);
			last;
		}
		sleep 0.02;
	}
	return;
}

sub DESTROY
{
	my ($self) = @_;
	local $@;
	$self->stop;
}

END
{
	$_->stop for grep { defined } values %running;
}

sub _call
{
	my ($self, $method, $path, $content) = @_;
	my %options;
	if (defined $content)
	{
		%options = (
			content => $JSON->encode($content),
			headers => { 'Content-Type' => 'application/json' });
	}
	my $res = $self->{http}->request($method, $self->base . $path, \%options);
	die "EventsApi: $method $path failed: $res->{status} $res->{reason}: $res->{content}\n"
	  unless $res->{success};
	return $JSON->decode($res->{content});
}

1;
