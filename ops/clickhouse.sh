#!/usr/bin/env bash
# Runs a ClickHouse server for winch's tests, CI and development, on
# 127.0.0.1 with everything (data, logs, config) under one directory.
#
#   ops/clickhouse.sh install                 # apt-get install clickhouse-server if missing
#   ops/clickhouse.sh start DIR [PORT]        # start (installing if needed), wait until it answers
#   ops/clickhouse.sh stop DIR                # stop it and wait until it is gone
#   ops/clickhouse.sh status DIR              # exit 0 when it answers
#
# Then WINCH_CLICKHOUSE_DSN=clickhouse://127.0.0.1:PORT/winch. PORT defaults to
# 9000. The server is Debian's clickhouse-server (18.16 on bookworm); winch's
# schema also runs on current releases. compose.yaml runs the same 18.16
# in a container (ops/clickhouse/build.sh).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
port=${3:-9000}

install() {
	if ! command -v clickhouse-server >/dev/null; then
		echo "installing clickhouse-server (Debian's package)" >&2
		local sudo=""
		[ "$(id -u)" = 0 ] || sudo=sudo
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
	fi
}

answers() {
	clickhouse-client --host 127.0.0.1 --port "$1" --query 'SELECT 1' >/dev/null 2>&1
}

need_dir() {
	[ -n "$dir" ] || { echo "usage: $0 $cmd DIR [PORT]" >&2; exit 2; }
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
}

start() {
	need_dir
	install
	if [ -f "$dir/port" ] && answers "$(cat "$dir/port")"; then
		echo "clickhouse already running on 127.0.0.1:$(cat "$dir/port")" >&2
		return 0
	fi
	mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/log"
	cat >"$dir/users.xml" <<-XML
	<?xml version="1.0"?>
	<yandex>
	  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
	  <users>
	    <default>
	      <password></password>
	      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
	      <profile>default</profile>
	      <quota>default</quota>
	    </default>
	  </users>
	  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
	</yandex>
	XML
	cat >"$dir/config.xml" <<-XML
	<?xml version="1.0"?>
	<yandex>
	  <logger><level>warning</level><log>$dir/log/server.log</log><errorlog>$dir/log/server.err.log</errorlog><size>100M</size><count>2</count></logger>
	  <listen_host>127.0.0.1</listen_host>
	  <tcp_port>$port</tcp_port>
	  <path>$dir/data/</path>
	  <tmp_path>$dir/tmp/</tmp_path>
	  <user_files_path>$dir/user_files/</user_files_path>
	  <users_config>$dir/users.xml</users_config>
	  <default_profile>default</default_profile>
	  <default_database>default</default_database>
	  <timezone>UTC</timezone>
	  <mark_cache_size>268435456</mark_cache_size>
	  <uncompressed_cache_size>268435456</uncompressed_cache_size>
	  <max_concurrent_queries>100</max_concurrent_queries>
	</yandex>
	XML
	echo "$port" >"$dir/port"
	clickhouse-server --config-file="$dir/config.xml" >"$dir/log/stdout.log" 2>&1 &
	echo $! >"$dir/pid"
	for _ in $(seq 300); do
		if answers "$port"; then
			echo "clickhouse ready on 127.0.0.1:$port (data in $dir)" >&2
			return 0
		fi
		if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
			echo "clickhouse exited; its log:" >&2
			tail -20 "$dir/log/server.err.log" "$dir/log/stdout.log" >&2 || true
			exit 1
		fi
		sleep 0.1
	done
	echo "clickhouse did not answer on 127.0.0.1:$port within 30s" >&2
	exit 1
}

stop() {
	need_dir
	[ -f "$dir/pid" ] || return 0
	local pid
	pid=$(cat "$dir/pid")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || { rm -f "$dir/pid"; return 0; }
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$dir/pid"
}

case "$cmd" in
install) install ;;
start) start ;;
stop) stop ;;
status) need_dir; answers "$(cat "$dir/port" 2>/dev/null || echo "$port")" ;;
*) echo "usage: $0 install | start DIR [PORT] | stop DIR | status DIR" >&2; exit 2 ;;
esac
