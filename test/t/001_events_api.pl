# Tests of the PagerDuty Events API stand-in (test/events_api.py) on its own, through
# test/EventsApi.pm: validation against PagerDuty's rules, fault-injection rules,
# recording, keep-alive.  No PostgreSQL needed.  Run: prove -v -I test test/t/001_events_api.pl

use strict;
use warnings;

use lib 'test';
use EventsApi;
use HTTP::Tiny;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time);

my $JSON = JSON::PP->new->utf8->canonical;
my $KEY = 'abcdefghijklmnopqrstuvwxyzABCDEF';    # 32 characters [A-Za-z0-9]
my $OTHER_KEY = '0123456789' x 3 . 'zz';

my $http = HTTP::Tiny->new(timeout => 10);

# POST $body (a hashref is JSON-encoded, a string is sent as is) and decode the reply.
sub post
{
	my ($url, $body, %opts) = @_;
	my $res = ($opts{http} // $http)->post(
		$url,
		{
			content => ref $body ? $JSON->encode($body) : $body,
			headers => {
				'Content-Type' => $opts{content_type} // 'application/json',
				%{ $opts{headers} // {} },
			},
		});
	$res->{json} = eval { $JSON->decode($res->{content}) };
	return $res;
}

sub get_json
{
	my ($url) = @_;
	return $JSON->decode($http->get($url)->{content});
}

# A valid trigger event; %payload and %top override or add fields.
sub trigger
{
	my (%args) = @_;
	return {
		routing_key => $KEY,
		event_action => 'trigger',
		%{ $args{top} // {} },
		payload => {
			summary => 'disk full on db1',
			source => 'db1.example.com',
			severity => 'critical',
			%{ $args{payload} // {} },
		},
	};
}

sub change_event
{
	my (%top) = @_;
	return { routing_key => $KEY, payload => { summary => 'deployed v1.2' }, %top };
}

sub is_accepted
{
	my ($res, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is($res->{status}, 202, "$name: accepted")
	  or diag explain $res->{json} // $res->{content};
}

# Expect a 400 "invalid event" reply with an error matching $pattern.
sub is_rejected
{
	my ($res, $pattern, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $json = $res->{json} // {};
	my @errors = @{ $json->{errors} // [] };
	ok( $res->{status} == 400
		  && ($json->{status} // '') eq 'invalid event'
		  && grep({ $_ =~ $pattern } @errors),
		"$name: rejected with error matching $pattern")
	  or diag explain $res->{status}, $json;
}

# ---------------------------------------------------------------- valid events

my $api = EventsApi->start;
like($api->port, qr/^\d+$/, 'stand-in started and reported its port');
is_deeply(get_json($api->base . '/_control/health'), { ok => JSON::PP::true }, 'health');

my $res = post($api->url, trigger());
is_accepted($res, 'minimal trigger');
is($res->{json}{status}, 'success', 'trigger reply status');
is($res->{json}{message}, 'Event processed', 'trigger reply message');
like($res->{json}{dedup_key}, qr/^[0-9a-f]{32}$/, 'trigger without dedup_key gets a fresh one');

$res = post($api->url, trigger(top => { dedup_key => 'srv01/mysql' }));
is($res->{json}{dedup_key}, 'srv01/mysql', 'trigger dedup_key is echoed');

for my $action (qw(acknowledge resolve))
{
	$res = post($api->url,
		{ routing_key => $KEY, event_action => $action, dedup_key => 'srv01/mysql' });
	is_accepted($res, $action);
	is($res->{json}{dedup_key}, 'srv01/mysql', "$action dedup_key is echoed");
}

$res = post(
	$api->url,
	trigger(
		top => {
			dedup_key => 'k' x 255,
			client => 'PostgreSQL',
			client_url => 'https://db.example.com/',
			links => [ { href => 'https://example.com/runbook', text => 'runbook' } ],
			images => [ { src => 'https://example.com/graph.png', href => 'https://example.com', alt => 'graph' } ],
		},
		payload => {
			timestamp => '2015-07-17T08:42:58.315+0000',
			component => 'postgres',
			group => 'prod',
			class => 'disk',
			custom_details => { 'free space' => '1%', load => 0.75 },
		}));
is_accepted($res, 'trigger with every field and a 255-character dedup_key');

for my $ts ('2015-07-17T08:42:58Z', '2015-07-17T08:42:58+00:00', '2015-07-17T08:42:58+0000',
	'2015-07-17T08:42:58.123456-05:30')
{
	is_accepted(post($api->url, trigger(payload => { timestamp => $ts })), "timestamp $ts");
}

is_accepted(post($api->url, trigger(payload => { summary => "\x{e9}" x 1024 })),
	'summary of 1024 two-byte characters');
is_accepted(post($api->url, trigger(), content_type => 'application/json; charset=utf-8'),
	'Content-Type with a charset parameter');
is_accepted(post($api->base . '/enqueue', trigger()), 'alert event on /enqueue');

$res = post($api->base . '/v2/change/enqueue', change_event(
	links => [ { href => 'https://ci.example.com/build/220' } ],
	payload => {
		summary => 'Build Success',
		timestamp => '2015-07-17T08:42:58.315+0000',
		source => 'ci',
		custom_details => { build => 220 },
	}));
is_accepted($res, 'change event');
is_deeply($res->{json}, { status => 'success', message => 'Change event processed' },
	'change event reply');
is_accepted(post($api->base . '/change/enqueue', change_event()), 'change event on /change/enqueue');

$res = post($api->base . '/v1/nothing', trigger());
is($res->{status}, 404, 'unknown path is 404');
ok($res->{json}, '404 body is JSON');
is($http->get($api->url)->{status}, 405, 'GET on an event endpoint is 405');

# ---------------------------------------------------------------- invalid events

is_rejected(post($api->url, trigger(top => { routing_key => 'a' x 31 })),
	qr/routing_key must be exactly 32 characters/, 'routing_key of 31 characters');
is_rejected(post($api->url, trigger(top => { routing_key => 'a' x 31 . '-' })),
	qr/routing_key must be exactly 32 characters from \[A-Za-z0-9\]/, 'routing_key with a dash');
is_rejected(post($api->url, { event_action => 'trigger', payload => trigger()->{payload} }),
	qr/routing_key is required/, 'missing routing_key');

my $no_action = trigger();
delete $no_action->{event_action};
is_rejected(post($api->url, $no_action), qr/event_action is required/, 'missing event_action');
is_rejected(post($api->url, trigger(top => { event_action => 'ack' })),
	qr/event_action must be one of trigger, acknowledge, resolve/, 'invalid event_action');

is_rejected(post($api->url, trigger(payload => { severity => 'fatal' })),
	qr/payload\.severity must be one of critical, error, warning, info/, 'bad severity');
is_rejected(post($api->url, trigger(payload => { summary => 'x' x 1025 })),
	qr/payload\.summary must be at most 1024 characters, got 1025/, 'summary of 1025 characters');
is_rejected(post($api->url, trigger(payload => { summary => "\x{e9}" x 1025 })),
	qr/payload\.summary must be at most 1024 characters/, 'summary of 1025 two-byte characters');
is_rejected(post($api->url, trigger(payload => { summary => '' })),
	qr/payload\.summary must not be empty/, 'empty summary');

my $no_source = trigger();
delete $no_source->{payload}{source};
is_rejected(post($api->url, $no_source), qr/payload\.source is required/, 'missing source');
is_rejected(post($api->url, { routing_key => $KEY, event_action => 'trigger' }),
	qr/payload is required for trigger events/, 'trigger without payload');

is_rejected(post($api->url, trigger(top => { dedup_key => 'k' x 256 })),
	qr/dedup_key must be at most 255 characters, got 256/, 'dedup_key of 256 characters');
is_rejected(post($api->url, { routing_key => $KEY, event_action => 'resolve' }),
	qr/dedup_key is required for resolve events/, 'resolve without dedup_key');
is_rejected(
	post($api->url,
		{ routing_key => $KEY, event_action => 'acknowledge', dedup_key => 'x', payload => {} }),
	qr/payload is not allowed on acknowledge events/, 'acknowledge with a payload');

for my $ts ('yesterday', '2015-07-17T08:42:58', '2015-07-17', '2015-02-30T08:42:58Z',
	'2015-07-17 08:42:58+00')
{
	is_rejected(post($api->url, trigger(payload => { timestamp => $ts })),
		qr/payload\.timestamp must be an ISO 8601 date-time with a time zone/,
		"timestamp '$ts'");
}

is_rejected(post($api->url, trigger(top => { severity => 'info' })),
	qr/unknown field severity/, 'unknown top-level key');
is_rejected(post($api->url, trigger(payload => { details => 'x' })),
	qr/unknown field payload\.details/, 'unknown payload key');
is_rejected(post($api->url, trigger(payload => { custom_details => 'a string' })),
	qr/payload\.custom_details must be an object, got string/, 'non-object custom_details');
is_rejected(post($api->url, trigger(top => { links => [ { text => 'no href' } ] })),
	qr/links\[0\]\.href is required/, 'link without href');
is_rejected(post($api->url, trigger(top => { links => [ { href => 'ftp://example.com' } ] })),
	qr/links\[0\]\.href must be an http/, 'link with a non-http href');
is_rejected(post($api->url, trigger(top => { images => [ { alt => 'no src' } ] })),
	qr/images\[0\]\.src is required/, 'image without src');
is_rejected(post($api->url, trigger(top => { client_url => 'example.com' })),
	qr/client_url must be an http/, 'client_url without a scheme');

is_rejected(post($api->change_url, change_event(event_action => 'trigger')),
	qr/unknown field event_action/, 'change event with event_action');
is_rejected(post($api->change_url, change_event(payload => { source => 'ci' })),
	qr/payload\.summary is required/, 'change event without summary');

is_rejected(post($api->url, trigger(), content_type => 'text/plain'),
	qr/Content-Type must be application\/json/, 'wrong Content-Type');
is_rejected(post($api->url, '{"routing_key": '), qr/body is not valid JSON/, 'truncated JSON');
is_rejected(post($api->url, "\"\xff\""), qr/body is not valid UTF-8/, 'invalid UTF-8');
is_rejected(post($api->url, '[1, 2]'), qr/body must be a JSON object, got array/,
	'top level is an array');

$res = post($api->url, trigger(top => { routing_key => 'short' }, payload => { severity => 'bad' }));
is(scalar @{ $res->{json}{errors} }, 2, 'every error is reported, not just the first')
  or diag explain $res->{json};

# The 512 KB limit is on the whole body: pad a valid event to exactly the limit.
my $padded = trigger(payload => { custom_details => { pad => '' } });
my $pad = 524288 - length $JSON->encode($padded);
$padded->{payload}{custom_details}{pad} = 'p' x $pad;
is(length $JSON->encode($padded), 524288, 'padded event is exactly 512 KB');
is_accepted(post($api->url, $padded), 'event of exactly 512 KB');
$padded->{payload}{custom_details}{pad} .= 'p';
my $big_client = HTTP::Tiny->new(timeout => 10);
$res = post($api->url, $padded, http => $big_client);
is_rejected($res, qr/^event is larger than 512 KB$/, 'event of 512 KB + 1 byte');
is_accepted(post($api->url, trigger(), http => $big_client),
	'the connection still works after an oversized event');

# ---------------------------------------------------------------- fault rules

$api->set_rules({ action => 'status', status => 500, times => 2 });
is(post($api->url, trigger())->{status}, 500, 'rule status 500: first request');
$res = post($api->url, trigger());
is($res->{status}, 500, 'rule status 500: second request');
is_deeply($res->{json}, { status => 'error', message => 'internal error' }, 'default 5xx body');
is_accepted(post($api->url, trigger()), 'rule status 500 used up after times => 2');

$api->set_rules({ action => 'status', status => 429, retry_after => '2' });
$res = post($api->url, trigger());
is($res->{status}, 429, 'rule status 429');
is($res->{headers}{'retry-after'}, '2', '429 carries Retry-After');
is($res->{json}{status}, 'throttle event', 'default 429 body');

$api->set_rules({ action => 'status', status => 400 });
$res = post($api->url, trigger());
is($res->{status}, 400, 'rule status 400 even for a valid event');
is_deeply($res->{json}{errors}, ['injected failure'], 'default 400 body');

$api->set_rules({ action => 'status', status => 503, body => { status => 'custom' } });
$res = post($api->url, trigger());
is_deeply([ $res->{status}, $res->{json} ], [ 503, { status => 'custom' } ],
	'rule with its own body');

$api->set_rules({ routing_key => $OTHER_KEY, action => 'status', status => 503 });
is_accepted(post($api->url, trigger()), 'rule for another routing key leaves this one alone');
is(post($api->url, trigger(top => { routing_key => $OTHER_KEY }))->{status}, 503,
	'rule for a routing key applies to it');

$api->set_rules({ path => 'change', action => 'status', status => 502 });
is_accepted(post($api->url, trigger()), 'path rule leaves other paths alone');
is(post($api->change_url, change_event())->{status}, 502, 'path rule applies to its path');

$api->set_rules({ action => 'slow', delay => 0.5, times => 1 });
my $started = time;
$res = post($api->url, trigger());
my $elapsed = time - $started;
is_accepted($res, 'slow rule still answers normally');
cmp_ok($elapsed, '>=', 0.45, 'slow rule delayed the answer');

$api->set_rules({ action => 'slow', delay => 0.2, status => 504, times => 1 });
is(post($api->url, trigger())->{status}, 504, 'slow rule with a status answers that status');

$api->set_rules({ action => 'drop', times => 1 });
$res = post($api->url, trigger());
is($res->{status}, 599, 'drop rule: client sees a connection error');
is_accepted(post($api->url, trigger()), 'drop rule used up');

ok(!eval { $api->set_rules({ action => 'explode' }); 1 }, 'an invalid rule is refused');
like($@, qr/rules\[0\]\.action must be one of/, 'refusal explains why');

$api->clear_rules;
is_deeply(get_json($api->base . '/_control/rules'), { rules => [] }, 'rules cleared');

# ---------------------------------------------------------------- recording

$api->clear_requests;
is_deeply($api->requests, [], 'recording cleared');
post($api->url, trigger(top => { dedup_key => 'first' }));
post($api->url, { routing_key => $KEY, event_action => 'resolve', dedup_key => 'first' });
post($api->change_url, change_event());
post($api->url, trigger(top => { routing_key => 'bad' }));

my $reqs = $api->requests;
is(scalar @$reqs, 4, 'four requests recorded (control calls are not)');
is_deeply([ map { $_->{seq} } @$reqs ],
	[ map { $reqs->[0]{seq} + $_ } 0 .. 3 ], 'seq numbers are consecutive');
is_deeply([ map { $_->{event_action} } @$reqs ], [qw(trigger resolve change trigger)],
	'arrival order and event_action');
is_deeply([ map { $_->{status} } @$reqs ], [ 202, 202, 202, 400 ], 'statuses recorded');
is($reqs->[0]{dedup_key}, 'first', 'dedup_key recorded');
is($reqs->[3]{routing_key}, 'bad', 'routing_key recorded even when invalid');
like($reqs->[3]{errors}[0], qr/routing_key/, 'errors recorded');
is($reqs->[2]{path}, '/v2/change/enqueue', 'path recorded');
is($reqs->[0]{body}{payload}{source}, 'db1.example.com', 'parsed body recorded');
is($reqs->[0]{raw_size}, length $JSON->encode(trigger(top => { dedup_key => 'first' })),
	'raw_size recorded');
ok($reqs->[0]{t} <= $reqs->[1]{t} && $reqs->[1]{t} <= time, 'arrival times recorded');

my $since = $api->requests(since => $reqs->[1]{seq});
is_deeply([ map { $_->{seq} } @$since ], [ $reqs->[2]{seq}, $reqs->[3]{seq} ],
	'since returns only later requests');

my $last_seq = $reqs->[3]{seq};
$api->clear_requests;
post($api->url, trigger());
is($api->requests->[0]{seq}, $last_seq + 1, 'seq keeps counting after a clear');

$api->set_rules({ action => 'drop', times => 1 });
post($api->url, trigger());
$reqs = $api->requests(since => $last_seq + 1);
is_deeply([ $reqs->[0]{status}, $reqs->[0]{action} ], [ 0, 'drop' ],
	'a dropped request is recorded with status 0 and its action');

is_deeply($api->stats, { requests => 2, by_status => { 202 => 1, 0 => 1 } }, 'stats');

my $found = $api->wait_for_requests(1, filter => sub { $_[0]{status} == 0 });
is(scalar @$found, 1, 'wait_for_requests finds a matching request');
$started = time;
$found = $api->wait_for_requests(5, timeout => 0.3);
ok(@$found == 2 && time - $started >= 0.25,
	'wait_for_requests gives up at its timeout with what it has');

# ---------------------------------------------------------------- HTTP details

# Keep-alive: two requests on one HTTP::Tiny object share a connection, seen as the
# same local port of HTTP::Tiny's (internal) socket.
my $kept = HTTP::Tiny->new(timeout => 10, keep_alive => 1);
is_accepted(post($api->url, trigger(), http => $kept), 'keep-alive: first request');
my $port1 = $kept->{handle} && $kept->{handle}{fh}->sockport;
is_accepted(post($api->url, trigger(), http => $kept), 'keep-alive: second request');
my $port2 = $kept->{handle} && $kept->{handle}{fh}->sockport;
ok($port1 && $port1 == $port2, 'keep-alive: both requests used the same connection');

$res = post($api->url, trigger(), headers => { Connection => 'close' });
is($res->{headers}{connection}, 'close', 'Connection: close is honoured');

# HTTP::Tiny sends a body given as a code reference with chunked transfer encoding.
my @chunks = ($JSON->encode(trigger()) =~ /(.{1,40})/gs);
$res = $http->post($api->url,
	{ content => sub { shift @chunks }, headers => { 'Content-Type' => 'application/json' } });
is($res->{status}, 202, 'chunked request body');

# ---------------------------------------------------------------- log and shutdown

open my $log, '<', $api->log_file or die "cannot open log: $!";
my @lines = <$log>;
close $log;
is(scalar @lines, $api->requests->[-1]{seq}, 'one log line per recorded request');
is($JSON->decode($lines[-1])->{path}, '/v2/enqueue', 'log lines are JSON records');

my $pid = $api->pid;
$api->stop;
ok(!kill(0, $pid), 'stop ends the server process');

done_testing();
