#!/usr/bin/env bash
# make compose-test: brings compose.yaml up for real, from the local images
# (make images compose-images; the winch image from this tree's bin/winch,
# under a tag of its own), under a project name of its own, and checks
# what a user of it relies on:
#   1. three NATS servers cluster, init makes the streams R3, three workers,
#      the sink and the gateway become healthy;
#   2. jobs run on all three workers, each command in its own container
#      beside them (the host's engine, through the socket), and one through
#      the gateway's HTTP API; all are found in `winch audit`;
#   3. the NATS server that leads the requests stream is SIGKILLed while
#      jobs are submitted and run: every request the stream acknowledged
#      runs and succeeds, once, and is in the audit; the killed server,
#      started again, becomes healthy;
#   4. everything goes (containers, the job containers the workers left,
#      networks, volumes), on success or failure, and the script checks it.
# Debian's docker-compose 1.29 (installed if missing); COMPOSE=... picks
# another (`docker compose`). Needs bin/winch (make build) on the host.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
need() { # need COMMAND PACKAGE
	command -v "$1" >/dev/null && return 0
	echo "installing $2" >&2
	$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
if [ -z "${COMPOSE:-}" ]; then
	need docker-compose docker-compose
	COMPOSE=docker-compose
fi
need jq jq
need curl curl
winch=$PWD/bin/winch
[ -x "$winch" ] || { echo "compose-test: $winch is missing: run make build" >&2; exit 1; }
for image in winch-toolbox:latest winch-clickhouse:latest; do
	docker image inspect "$image" >/dev/null 2>&1 || { echo "compose-test: image $image is missing: run make images compose-images" >&2; exit 1; }
done

started=$(date +%s)
say() { echo "compose-test [$(($(date +%s) - started))s]: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
# Checks that passed, for the closing "N passed, N failed" line.
passed=0
ok() { passed=$((passed + 1)); say "ok: $*"; }
rand() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# A project of its own: nothing of another stack (or of a user's) is
# touched, and everything it makes is found by its label.
project=winchct$(date +%s)$$
export COMPOSE_PROJECT_NAME=$project
# Secrets from the environment, as a user gives them; new ones each run.
WINCH_NATS_WORKER_PASSWORD=$(rand)
WINCH_NATS_ALICE_PASSWORD=$(rand)
WINCH_NATS_GATEWAY_PASSWORD=$(rand)
token=$(rand)
WINCH_TOKENS="$(printf %s "$token" | sha256sum | cut -d' ' -f1):alice"
# Published ports: any free one (empty), found below with `port`.
WINCH_NATS_PORT_1='' WINCH_NATS_PORT_2='' WINCH_NATS_PORT_3='' WINCH_CLICKHOUSE_PORT='' WINCH_GATEWAY_PORT=''
export WINCH_NATS_WORKER_PASSWORD WINCH_NATS_ALICE_PASSWORD WINCH_NATS_GATEWAY_PASSWORD WINCH_TOKENS \
	WINCH_NATS_PORT_1 WINCH_NATS_PORT_2 WINCH_NATS_PORT_3 WINCH_CLICKHOUSE_PORT WINCH_GATEWAY_PORT
dc() { $COMPOSE -f compose.yaml "$@"; }
tmp=$(mktemp -d)
# The winch image of this tree's bin/winch, under a tag of this run's: the
# engine may be shared, and winch:latest be another tree's.
export WINCH_IMAGE=winch:$project

# containers SERVICE: the ids of the service's containers, running or not
# (docker itself: each docker-compose 1.29 call costs a second or two).
containers() {
	docker ps -aq --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1"
}

# The job containers a worker of this project started: labelled with the
# worker's id, which starts with its container's host name.
job_containers() {
	local hosts
	hosts=$(containers worker | xargs -r docker inspect -f '{{.Config.Hostname}}')
	[ -n "$hosts" ] || return 0
	docker ps -a --filter label=winch.worker --format '{{.ID}} {{.Label "winch.worker"}}' | while read -r id worker; do
		for h in $hosts; do
			case $worker in "$h"-*) echo "$id" ;; esac
		done
	done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ "$rc" != 0 ]; then
		say "failed; the stack's state and last logs:"
		dc ps >&2 || true
		dc logs --no-color --tail=30 >&2 || true
	fi
	local jobs
	jobs=$(job_containers || true)
	[ -z "$jobs" ] || docker rm -f $jobs >/dev/null 2>&1 || true
	dc down -v --remove-orphans -t 10 >/dev/null 2>&1 || true
	docker image rm "$WINCH_IMAGE" >/dev/null 2>&1 || true
	rm -rf "$tmp"
	# Nothing may be left behind.
	local left
	left=$(
		docker ps -aq --filter "label=com.docker.compose.project=$project"
		docker network ls -q --filter "label=com.docker.compose.project=$project"
		docker network ls -q --filter "name=^${project}_"
		docker volume ls -q --filter "label=com.docker.compose.project=$project"
		docker volume ls -q --filter "name=^${project}_"
		docker image ls -q "$WINCH_IMAGE"
	)
	if [ -n "$left" ]; then
		say "FAIL: left behind after down: $(echo $left)"
		rc=1
	elif [ "$rc" = 0 ]; then
		ok "torn down, nothing left behind"
	fi
	echo "compose-test: $passed passed, $([ "$rc" = 0 ] && echo 0 || echo 1) failed"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

docker build -q -f ops/Dockerfile -t "$WINCH_IMAGE" . >/dev/null || fail "docker build $WINCH_IMAGE"

# 1. Up, with three workers, everything healthy.
say "up: project $project, 3 workers ($COMPOSE)"
dc up -d --scale worker=3 >"$tmp/up.log" 2>&1 || { cat "$tmp/up.log" >&2; fail "$COMPOSE up"; }
healthy() { # healthy SERVICE COUNT: COUNT containers of SERVICE are healthy
	local n
	n=$(containers "$1" | xargs -r docker inspect -f '{{.State.Health.Status}}' | grep -c '^healthy$' || true)
	[ "$n" = "$2" ]
}
wait_healthy() { # wait_healthy SECONDS SERVICE=COUNT...
	local deadline=$(($(date +%s) + $1)) s
	shift
	while :; do
		local all=1
		for s in "$@"; do healthy "${s%=*}" "${s#*=}" || all=0; done
		[ "$all" = 1 ] && return 0
		[ "$(date +%s)" -lt "$deadline" ] || fail "not healthy within the time: $* ($(dc ps 2>&1 | tail -n +3 | tr -s ' ' | cut -c1-90 | tr '\n' ';'))"
		sleep 1
	done
}
wait_healthy 180 nats-1=1 nats-2=1 nats-3=1 clickhouse=1 worker=3 sink=1 gateway=1
[ "$(containers init | xargs docker inspect -f '{{.State.ExitCode}}')" = 0 ] || fail "init did not succeed"
ok "healthy: 3 NATS servers, ClickHouse, 3 workers, the sink, the gateway"

port() { docker port "$(containers "$1")" "$2/tcp" | head -1 | sed 's/.*://'; }
p1=$(port nats-1 4222) p2=$(port nats-2 4222) p3=$(port nats-3 4222)
export WINCH_NATS_URL="nats://alice:$WINCH_NATS_ALICE_PASSWORD@127.0.0.1:$p1,nats://alice:$WINCH_NATS_ALICE_PASSWORD@127.0.0.1:$p2,nats://alice:$WINCH_NATS_ALICE_PASSWORD@127.0.0.1:$p3"
export WINCH_CLICKHOUSE_DSN="clickhouse://127.0.0.1:$(port clickhouse 9000)/winch"
export WINCH_PRINCIPAL=alice WINCH_LOG_FORMAT=json
gateway="http://127.0.0.1:$(port gateway 5123)"

# jsz: JetStream's view of the streams, from the first server that answers
# (the monitoring port is the container's own: winch health prints it).
declare -A nats_container
for s in nats-1 nats-2 nats-3; do nats_container[$s]=$(containers "$s"); done
jsz() {
	local s out
	for s in nats-1 nats-2 nats-3; do
		out=$(docker exec "${nats_container[$s]}" /winch health 'http://127.0.0.1:8222/jsz?accounts=true&streams=true&config=true' 2>/dev/null) || continue
		[ -n "$out" ] && { echo "$out"; return 0; }
	done
	return 1
}
stream() { jq -r --arg f "$1" '.account_details[]?.stream_detail[]? | select(.name == "WINCH_JOBS") | getpath($f | split(".")) // empty'; }
# The requests stream is R3 (winch init --replicas 3), led by one server.
replicas=$(jsz | stream config.num_replicas)
[ "$replicas" = 3 ] || fail "WINCH_JOBS has ${replicas:-no} replicas, want 3"
ok "the requests stream WINCH_JOBS has 3 replicas"

# submit PREFIX COUNT COMMAND ARGS...: COUNT `winch run`s in the
# background, ids PREFIX-1..COUNT; their exit codes in $tmp/PREFIX-N.rc.
submit() {
	local prefix=$1 count=$2 i
	shift 2
	for i in $(seq "$count"); do
		(
			rc=0
			# A bound, so that a run that never ends fails the test
			# instead of hanging it.
			timeout 180 "$winch" run --id "$prefix-$i" "$@" >"$tmp/$prefix-$i.out" 2>&1 || rc=$?
			echo "$rc" >"$tmp/$prefix-$i.rc"
		) &
		[ -z "${SUBMIT_EVERY:-}" ] || sleep "$SUBMIT_EVERY"
	done
	wait
}
# ran PREFIX COUNT: every run exited 0, or say which did not and why.
ran() {
	local prefix=$1 count=$2 i bad=0
	for i in $(seq "$count"); do
		if [ "$(cat "$tmp/$prefix-$i.rc" 2>/dev/null)" != 0 ]; then
			bad=$((bad + 1))
			say "$prefix-$i: exit $(cat "$tmp/$prefix-$i.rc" 2>/dev/null || echo none): $(tail -3 "$tmp/$prefix-$i.out" | tr '\n' ' ')"
		fi
	done
	[ "$bad" = 0 ] || fail "$bad of $count jobs of $prefix did not succeed"
}
# acked PREFIX COUNT: sorts the runs into acknowledged (exit 0: the stream
# stored the request) and refused (the client gave up and said so: while
# the cluster elects leaders, reads that come before the publish, like the
# module registry's or the state bucket's, can time out); anything else
# fails the test. Writes the ids to $tmp/PREFIX.acked, $tmp/PREFIX.refused
# and, of those, the ones refused before anything was published to
# $tmp/PREFIX.unpublished.
acked() {
	local prefix=$1 count=$2 i rc
	: >"$tmp/$prefix.acked"
	: >"$tmp/$prefix.refused"
	: >"$tmp/$prefix.unpublished"
	for i in $(seq "$count"); do
		rc=$(cat "$tmp/$prefix-$i.rc" 2>/dev/null || echo none)
		if [ "$rc" = 0 ]; then
			echo "$prefix-$i" >>"$tmp/$prefix.acked"
		elif [ "$rc" = 69 ] || [ "$rc" = 70 ] && grep -q 'context deadline exceeded\|unavailable' "$tmp/$prefix-$i.out"; then
			echo "$prefix-$i" >>"$tmp/$prefix.refused"
			if grep -q 'module registry unavailable\|read the module registry\|open state bucket' "$tmp/$prefix-$i.out"; then
				echo "$prefix-$i" >>"$tmp/$prefix.unpublished"
			fi
		else
			fail "$prefix-$i: exit $rc: $(tail -3 "$tmp/$prefix-$i.out" | tr '\n' ' ')"
		fi
	done
	[ -s "$tmp/$prefix.acked" ] || fail "no request of $prefix was acknowledged"
}
# audited_ids PREFIX SECONDS: within SECONDS, winch audit has each job of
# $tmp/PREFIX.acked once, succeeded, and none of $tmp/PREFIX.unpublished.
audited_ids() {
	local prefix=$1 deadline=$(($(date +%s) + $2)) missing id
	while :; do
		"$winch" audit --since 1h --limit 1000 -o csv >"$tmp/audit.csv" 2>"$tmp/audit.err" || true
		missing=0
		while read -r id; do
			grep -q ",$id,alice,.*,succeeded," "$tmp/audit.csv" || missing=$((missing + 1))
		done <"$tmp/$prefix.acked"
		[ "$missing" -gt 0 ] || break
		[ "$(date +%s)" -lt "$deadline" ] || fail "$missing acknowledged jobs of $prefix are not in winch audit as succeeded ($(cat "$tmp/audit.err"))"
		sleep 1
	done
	while read -r id; do
		[ "$(grep -c ",$id,alice," "$tmp/audit.csv")" = 1 ] || fail "$id is in winch audit $(grep -c ",$id,alice," "$tmp/audit.csv") times, want once"
	done <"$tmp/$prefix.acked"
	while read -r id; do
		! grep -q ",$id,alice," "$tmp/audit.csv" || fail "$id was refused before it was published, yet ran"
	done <"$tmp/$prefix.unpublished"
}
# refused_ran PREFIX: how many refused runs that may have published (their
# client cannot tell) ran all the same: at least once, not exactly once.
refused_ran() {
	local id n=0
	while read -r id; do
		grep -qxF "$id" "$tmp/$1.unpublished" && continue
		! grep -q ",$id,alice," "$tmp/audit.csv" || n=$((n + 1))
	done <"$tmp/$1.refused"
	echo "$n"
}
# audited PREFIX COUNT [SECONDS]: within SECONDS (default 90), winch audit
# has each job PREFIX-N once, succeeded; prints the workers that ran them.
audited() {
	local prefix=$1 count=$2 deadline=$(($(date +%s) + ${3:-90})) n
	while :; do
		"$winch" audit --since 1h --limit 1000 -o csv >"$tmp/audit.csv" 2>"$tmp/audit.err" || true
		n=$(grep -c ",$prefix-[0-9]*,alice,.*,succeeded," "$tmp/audit.csv" || true)
		[ "$n" -lt "$count" ] || break
		[ "$(date +%s)" -lt "$deadline" ] || fail "winch audit has $n of $count jobs of $prefix succeeded ($(cat "$tmp/audit.err"))"
		sleep 1
	done
	local jobs
	jobs=$(grep -o ",$prefix-[0-9]*,alice," "$tmp/audit.csv" | sort -u | wc -l)
	[ "$n" = "$count" ] && [ "$jobs" = "$count" ] || fail "winch audit has $n rows of $jobs jobs of $prefix succeeded, want one each of $count"
	grep ",$prefix-[0-9]*,alice," "$tmp/audit.csv" | cut -d, -f11 | sort -u
}

# 2. Twelve 3-second jobs at once: four slots a worker, so all three take
# some; each runs in a container of its own on the host's engine.
say "12 jobs on 3 workers"
submit spread 12 core.sleep --seconds 3 &
spread=$!
# The most job containers of these jobs seen running at once.
running=0
while kill -0 "$spread" 2>/dev/null; do
	n=$(docker ps --filter label=winch.job --format '{{.Label "winch.job"}}' | grep -c '^spread-' || true)
	[ "$n" -le "$running" ] || running=$n
	sleep 0.5
done
wait
[ "$running" -gt 4 ] || fail "at most $running job containers ran at once, want more than one worker's 4 slots"
ran spread 12
workers=$(audited spread 12)
[ "$(echo "$workers" | wc -l)" = 3 ] || fail "the jobs ran on $(echo "$workers" | wc -l) workers, want 3: $(echo $workers)"
ok "12 jobs succeeded on 3 workers ($(echo $workers)), up to $running at once in job containers, all in winch audit"

# And one through the gateway's HTTP API, as the token's principal.
curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
	-d '{"command":"core.echo","params":{"text":"through the gateway"}}' "$gateway/v1/jobs" >"$tmp/gw.json" ||
	fail "POST $gateway/v1/jobs: $(cat "$tmp/gw.json" 2>/dev/null)"
deadline=$(($(date +%s) + 60))
until "$winch" audit --grep 'through the gateway' --status succeeded -o csv 2>/dev/null | grep -q ',alice,core.echo,'; do
	[ "$(date +%s)" -lt "$deadline" ] || fail "the gateway's job is not in winch audit: $(cat "$tmp/gw.json")"
	sleep 1
done
ok "a job submitted through the gateway ran and is in winch audit"

# 3. Kill the leader of the requests stream while 40 jobs are submitted
# (one every 0.25 s) and run. Each `winch run -d` returns once the stream
# acknowledged its request; every acknowledged request must then run and
# succeed, once. (Detached: a follower of a job, `winch run` without -d,
# may stop seeing its job's events when its server is killed; that is the
# follow path's, and is not what this checks.)
leader() { jsz | stream cluster.leader; }
victim=$(leader)
case $victim in nats-[123]) ;; *) fail "no leader of WINCH_JOBS found: '$victim'" ;; esac
say "40 jobs while $victim, the leader of WINCH_JOBS, is killed"
SUBMIT_EVERY=0.25 submit failover 40 -d core.sleep --seconds 1 &
submitter=$!
sleep 1.5
docker kill -s SIGKILL "${nats_container[$victim]}" >/dev/null || fail "kill $victim"
killed_at=$(date +%s)
# A new leader, as the surviving servers' monitoring names it.
new='' deadline=$((killed_at + 60))
while [ "$(date +%s)" -lt "$deadline" ]; do
	new=$(leader)
	case $new in nats-[123]) [ "$new" != "$victim" ] && break ;; esac
	sleep 1
done
elected=$(($(date +%s) - killed_at))
wait "$submitter"
wait
acked failover 40
acked=$(($(date +%s) - killed_at))
while read -r id; do grep -h '^winch:' "$tmp/$id.out" | tail -1; done <"$tmp/failover.refused" | sort | uniq -c |
	while read -r n why; do say "refused $n times: $why"; done
# An attempt that cannot record its end (a state write that times out
# while the cluster elects leaders) keeps trying for a minute, then leaves
# its request to be redelivered after the lease (30 s): allow for both.
audited_ids failover 240
audited_after=$(($(date +%s) - killed_at))
retried=$(containers worker | xargs -r -n1 docker logs 2>&1 | grep -c 'record the end of the job; trying again' || true)
[ "$(docker inspect -f '{{.State.Running}}' "${nats_container[$victim]}")" = false ] || fail "$victim was started again behind the test's back"
if [ "$new" = "$victim" ] || [ -z "$new" ]; then
	new="none named within 60 s"
else
	new="$new, named ${elected}s after the kill"
fi
ok "$(wc -l <"$tmp/failover.acked") of 40 requests acknowledged ($(wc -l <"$tmp/failover.refused") refused to their client with exit 69 or 70, $(wc -l <"$tmp/failover.unpublished") of them before publishing, none of which ran, $(refused_ran failover) of the others ran all the same; the last ${acked}s after the kill), and each acknowledged job succeeded, once in winch audit (all ${audited_after}s after it; $(grep -c ",failover-[0-9]*,alice,.*,succeeded,[0-9]*,[0-9]*,[2-9]," "$tmp/audit.csv" || true) on a second attempt, $retried end-of-job records retried); new leader: $new"

restarted_at=$(date +%s)
dc start "$victim" >/dev/null 2>&1 || fail "start $victim again"
wait_healthy 120 "$victim=1"
ok "$victim is back and healthy, $(($(date +%s) - restarted_at))s after it was started again"
