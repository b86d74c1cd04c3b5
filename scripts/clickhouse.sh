#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# ClickHouse helpers for NetMeta's engine: a private server on loopback and the flow schema.
#
#   scripts/clickhouse.sh start DIR [HTTP_PORT] [TCP_PORT]
#       Start clickhouse-server (as the calling user, root included) with a config of its own
#       written into DIR: data, tmp, user_files, format_schemas and logs all live in DIR; it
#       listens on 127.0.0.1 only, has a user "default" without password (loopback only) and no
#       interserver port. Waits (at most NM_CH_START_TIMEOUT seconds, default 60) until
#       "SELECT 1" answers, then prints the server's pid. Defaults: HTTP 8123, TCP 9000.
#   scripts/clickhouse.sh stop DIR
#       Stop the server started in DIR (SIGTERM, then SIGKILL after 20 s).
#   scripts/clickhouse.sh apply TARGET VARIANT BROKERS TOPIC [GROUP [INI]]
#       Create the schema of proto/clickhouse/VARIANT (json or protobuf) on TARGET, with the
#       Kafka engine table reading TOPIC from BROKERS ("host:port,...") as consumer group GROUP
#       (default "netmeta").
#       Placeholders substituted in the DDL: {{KAFKA_BROKERS}}, {{KAFKA_TOPIC}},
#       {{KAFKA_GROUP}}, {{RETENTION_DAYS}} (env NM_CH_RETENTION_DAYS, default 7) and
#       {{FLOW_DIRECTION}}: the FlowDirection the view stores, from INI's outward_interfaces
#       direction rules (without INI or rules: as the exporter sent it).
#       The protobuf variant also copies proto/flow.proto into the server's format_schemas
#       directory when the server is one started in DIR.
#   scripts/clickhouse.sh sql VARIANT BROKERS TOPIC GROUP [INI]
#       Print every statement "apply" and "dicts" run for VARIANT, in order, each followed by a
#       line holding only ';' (clickhouse-client --multiquery reads it; so does chDB): review it,
#       version it, run it on any server. With INI, the direction rules go into the view and,
#       for protobuf, NetMeta's lookup layer follows (clickhouse-dicts.py --lookup: dictionaries
#       SamplerConfig, InterfaceNames, VlanNames, HostNames, IPProtocols, EtherTypes, TCPFlags,
#       autnums, Exporters, their data inline, and the SQL functions SamplerToString,
#       InterfaceToString, HostToString, VLANToString, ASNToString, IPv6ToString, toIPv6Net,
#       isIncomingFlow). For json (18.16: no SQL functions, dictionaries from XML files) the
#       statements "dicts" runs follow; the files it writes are listed in a comment.
#       Env NM_CH_AUTNUMS, NM_CH_VLAN_NAMES, NM_CH_HOST_NAMES: TSV files for autnums, VlanNames
#       and HostNames (clickhouse-dicts.py --help); NM_CH_DICT_USER/NM_CH_DICT_PASSWORD: the
#       user the dictionaries read their tables as (default: "default" without password).
#   scripts/clickhouse.sh dicts TARGET VARIANT INI [DICT_DIR]
#       Dictionaries InterfaceNames and Exporters from INI's [exporter.NAME] sections
#       (scripts/clickhouse-dicts.py). The files go where the server reads them, so this runs on
#       the server's machine (or DICT_DIR is a directory the server sees at the same path):
#       json (18.16): DICT_DIR/*.tsv and DICT_DIR/netmeta_dictionary.xml; the server's
#         <dictionaries_config> must cover that XML (Debian's config.xml reads
#         /etc/clickhouse-server/*_dictionary.xml: DICT_DIR=/etc/clickhouse-server, the default
#         for HOST:PORT; for DIR the default is DIR/dictionaries, which its config reads);
#       protobuf (current ClickHouse): the lookup layer of "sql" (tables in database
#         netmeta_lookup, dictionaries reading them, SQL functions); DICT_DIR (default
#         /var/lib/clickhouse/user_files/netmeta, DIR/user_files/netmeta for DIR) receives the
#         .tsv files and lookup.sql for reference.
#       Then reloads them and checks that both load from these files (exit 1 with the server's
#       error if not); database "dictionaries" (ENGINE = Dictionary) shows them as tables.
#   scripts/clickhouse.sh query TARGET SQL
#       Run one query (TabSeparated output).
#   scripts/clickhouse.sh prune TARGET [DAYS]
#       Retention for servers without table TTL (18.16): drop every daily partition of flows_raw
#       older than DAYS (default NM_CH_RETENTION_DAYS, else 7). Run it daily.
#   scripts/clickhouse.sh cluster config|apply|sql ...
#       The schema on a cluster (shards, replicas, Distributed): scripts/clickhouse-cluster.sh.
#
# TARGET is DIR (a server started by "start" in DIR) or [USER@]HOST:PORT (native TCP port,
# usually 9000) of any server; the user may also come from NM_CH_USER (default "default"), the
# password from NM_CH_PASSWORD (default none).
#
# The json variant is what Debian 12's clickhouse-server 18.16 can run (no Protobuf format, no
# IPv6 type); the protobuf variant is for current ClickHouse releases.
#
# Kafka consumers of a new group start at the beginning of the topic: the server config written
# here sets <kafka><auto_offset_reset>smallest</auto_offset_reset></kafka> (ClickHouse passes the
# <kafka> section to librdkafka; its default for a new group would be "latest", which loses every
# message produced before the table was created). On a server not started by this script, put the
# same section into its config.xml.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
SRC="$(cd "$HERE/.." && pwd)"
CH_SERVER="${NM_CH_SERVER:-clickhouse-server}"
CH_CLIENT="${NM_CH_CLIENT:-clickhouse-client}"

die() { echo "clickhouse.sh: $*" >&2; exit 1; }

usage() {
    sed -n '4,70p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# client_args DIR|HOST:PORT -> sets CH_ARGS (host/port arguments for clickhouse-client)
client_args() {
    local target="$1"
    if [ -d "$target" ]; then
        [ -f "$target/tcp_port" ] || die "$target has no tcp_port: not started by clickhouse.sh?"
        CH_ARGS=(--host 127.0.0.1 --port "$(cat "$target/tcp_port")")
    elif [[ "$target" == *:* ]]; then
        local user="${NM_CH_USER:-}" hostport="$target"
        if [[ "$hostport" == *@* ]]; then
            user="${hostport%%@*}"
            hostport="${hostport#*@}"
        fi
        CH_ARGS=(--host "${hostport%:*}" --port "${hostport##*:}")
        [ -z "$user" ] || CH_ARGS+=(--user "$user")
        [ -z "${NM_CH_PASSWORD:-}" ] || CH_ARGS+=(--password "$NM_CH_PASSWORD")
    else
        die "not a directory nor HOST:PORT: $target"
    fi
}

write_config() {
    local dir="$1" http="$2" tcp="$3"
    mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log" \
             "$dir/dictionaries"
    cat > "$dir/config.xml" <<EOF
<?xml version="1.0"?>
<!-- Written by scripts/clickhouse.sh: a private server on loopback for NetMeta's tests/demos. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$http</http_port>
    <tcp_port>$tcp</tcp_port>
    <!-- no interserver_http_port: no replication -->
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>50</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <!-- external dictionaries: scripts/clickhouse.sh dicts DIR json INI writes them here -->
    <dictionaries_config>$dir/dictionaries/*_dictionary.xml</dictionaries_config>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
    <!-- librdkafka properties for every Kafka engine table: a new consumer group starts at the
         beginning of the topic (librdkafka's default is the end). -->
    <kafka>
        <auto_offset_reset>smallest</auto_offset_reset>
    </kafka>
</yandex>
EOF
    cat > "$dir/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

cmd_start() {
    [ $# -ge 1 ] || usage
    local dir http tcp pid deadline
    mkdir -p "$1"
    dir="$(cd "$1" && pwd)"
    http="${2:-8123}"
    tcp="${3:-9000}"
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        die "a server is already running from $dir (pid $(cat "$dir/pid"))"
    fi
    write_config "$dir" "$http" "$tcp"
    echo "$http" > "$dir/http_port"
    echo "$tcp" > "$dir/tcp_port"
    # setsid: its own session and process group, so that "stop" (or a test) can end it and
    # whatever it started without touching anything else.
    (cd "$dir" && exec setsid "$CH_SERVER" --config-file="$dir/config.xml" \
        > "$dir/log/stdout.log" 2> "$dir/log/stderr.log" < /dev/null) &
    pid=$!
    echo "$pid" > "$dir/pid"
    deadline=$(( $(date +%s) + ${NM_CH_START_TIMEOUT:-60} ))
    until "$CH_CLIENT" --host 127.0.0.1 --port "$tcp" --query "SELECT 1" > /dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$dir/log/stderr.log" "$dir/log/clickhouse-server.err.log" >&2 2>/dev/null || true
            rm -f "$dir/pid"
            die "clickhouse-server exited during start-up (logs in $dir/log)"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            kill -TERM "$pid" 2>/dev/null || true
            rm -f "$dir/pid"
            die "clickhouse-server did not answer SELECT 1 on 127.0.0.1:$tcp within ${NM_CH_START_TIMEOUT:-60} s (logs in $dir/log)"
        fi
        sleep 0.2
    done
    echo "$pid"
}

cmd_stop() {
    [ $# -ge 1 ] || usage
    local dir="$1" pid
    [ -f "$dir/pid" ] || { echo "clickhouse.sh: no server recorded in $dir" >&2; return 0; }
    pid="$(cat "$dir/pid")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "clickhouse.sh: pid $pid still running after 20 s, SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$dir/pid"
}

# ddl_statements VARIANT BROKERS TOPIC GROUP [INI]: the DDL of proto/clickhouse/VARIANT with
# the placeholders filled, each file's statement followed by a line holding only ';'.
ddl_statements() {
    local variant="$1" brokers="$2" topic="$3" group="$4" ini="${5:-}"
    local ddl_dir="$SRC/proto/clickhouse/$variant" f dir_expr="FlowDirection"
    case "$variant" in json|protobuf) ;; *) die "no DDL variant '$variant' (json or protobuf)" ;; esac
    if [ -n "$ini" ]; then
        [ -f "$ini" ] || die "no such file: $ini"
        dir_expr="$(python3 "$HERE/clickhouse-dicts.py" -c "$ini" --direction "$variant")" ||
            die "clickhouse-dicts.py failed on $ini"
    fi
    for f in "$ddl_dir"/*.sql; do
        # the file's one statement without its final ';', then the separator line
        sed -e "s|{{KAFKA_BROKERS}}|$brokers|g" -e "s|{{KAFKA_TOPIC}}|$topic|g" \
            -e "s|{{KAFKA_GROUP}}|$group|g" \
            -e "s|{{RETENTION_DAYS}}|${NM_CH_RETENTION_DAYS:-7}|g" \
            -e "s|{{FLOW_DIRECTION}}|$dir_expr|g" "$f" | sed -e '$ s/;[[:space:]]*$//'
        echo ";"
    done
}

# lookup_args: clickhouse-dicts.py options from NM_CH_AUTNUMS/VLAN_NAMES/HOST_NAMES
lookup_args() {
    LOOKUP_ARGS=()
    [ -z "${NM_CH_AUTNUMS:-}" ] || LOOKUP_ARGS+=(--autnums "$NM_CH_AUTNUMS")
    [ -z "${NM_CH_VLAN_NAMES:-}" ] || LOOKUP_ARGS+=(--vlan-names "$NM_CH_VLAN_NAMES")
    [ -z "${NM_CH_HOST_NAMES:-}" ] || LOOKUP_ARGS+=(--host-names "$NM_CH_HOST_NAMES")
}

cmd_apply() {
    [ $# -ge 4 ] || usage
    local target="$1" variant="$2" brokers="$3" topic="$4" group="${5:-netmeta}" ini="${6:-}"
    local sql
    sql="$(ddl_statements "$variant" "$brokers" "$topic" "$group" "$ini")" || exit 1
    client_args "$target"
    if [ "$variant" = protobuf ] && [ -d "$target" ]; then
        cp "$SRC/proto/flow.proto" "$target/format_schemas/flow.proto"
    fi
    "$CH_CLIENT" "${CH_ARGS[@]}" --multiquery --query "$sql" ||
        die "applying proto/clickhouse/$variant failed"
}

cmd_sql() {
    [ $# -ge 4 ] || usage
    local variant="$1" brokers="$2" topic="$3" group="$4" ini="${5:-}"
    echo "-- NetMeta capture engine: ClickHouse schema, variant $variant (scripts/clickhouse.sh sql)"
    ddl_statements "$variant" "$brokers" "$topic" "$group" "$ini" || exit 1
    [ -n "$ini" ] || return 0
    if [ "$variant" = protobuf ]; then
        lookup_args
        python3 "$HERE/clickhouse-dicts.py" -c "$ini" --lookup "${LOOKUP_ARGS[@]}" ||
            die "clickhouse-dicts.py failed on $ini"
    else
        echo "-- dicts: InterfaceNames/Exporters from XML files that clickhouse-dicts.py writes"
        echo "-- (netmeta_dictionary.xml, InterfaceNames.tsv, Exporters.tsv), then:"
        echo "CREATE DATABASE IF NOT EXISTS dictionaries ENGINE = Dictionary"
        echo ";"
        echo "SYSTEM RELOAD DICTIONARIES"
        echo ";"
    fi
}

cmd_dicts() {
    [ $# -ge 3 ] || usage
    local target="$1" variant="$2" ini="$3" dict_dir="${4:-}" xml_dir=""
    [ -f "$ini" ] || die "no such file: $ini"
    client_args "$target"
    case "$variant" in
        json)
            if [ -z "$dict_dir" ]; then
                if [ -d "$target" ]; then dict_dir="$target/dictionaries"
                else dict_dir=/etc/clickhouse-server; fi
            fi
            # the .tsv files next to the XML, in a subdirectory when DICT_DIR is the server's
            # config directory
            xml_dir="$dict_dir"
            if [ "$(cd "$dict_dir" 2>/dev/null && pwd)" = /etc/clickhouse-server ]; then
                dict_dir=/etc/clickhouse-server/netmeta
            fi
            mkdir -p "$dict_dir" "$xml_dir"
            dict_dir="$(cd "$dict_dir" && pwd)"
            python3 "$HERE/clickhouse-dicts.py" -c "$ini" -o "$dict_dir" >&2 ||
                die "clickhouse-dicts.py failed"
            if [ "$(cd "$xml_dir" && pwd)" != "$dict_dir" ]; then
                mv -f "$dict_dir/netmeta_dictionary.xml" "$xml_dir/netmeta_dictionary.xml"
            fi
            # a new XML file is noticed by the server's config watcher within a few seconds;
            # SYSTEM RELOAD DICTIONARIES then (re)loads every dictionary from its file
            ;;
        protobuf)
            if [ -z "$dict_dir" ]; then
                if [ -d "$target" ]; then dict_dir="$target/user_files/netmeta"
                else dict_dir=/var/lib/clickhouse/user_files/netmeta; fi
            fi
            mkdir -p "$dict_dir"
            dict_dir="$(cd "$dict_dir" && pwd)"
            lookup_args
            python3 "$HERE/clickhouse-dicts.py" -c "$ini" -o "$dict_dir" "${LOOKUP_ARGS[@]}" >&2 ||
                die "clickhouse-dicts.py failed"
            "$CH_CLIENT" "${CH_ARGS[@]}" --multiquery --query "$(cat "$dict_dir/lookup.sql")" ||
                die "the lookup layer (lookup.sql) failed"
            ;;
        *) die "no DDL variant '$variant' (json or protobuf)" ;;
    esac
    # Both dictionaries must load from the files just written: as many elements as lines, and
    # (json) from this XML file, not from an older one elsewhere. The server may take a few
    # seconds to notice a new dictionaries_config file.
    local n_if n_ex want got origin_cond=""
    n_if=$(wc -l < "$dict_dir/InterfaceNames.tsv")
    n_ex=$(wc -l < "$dict_dir/Exporters.tsv")
    want="Exporters:$n_ex InterfaceNames:$n_if "
    if [ "$variant" = json ]; then
        xml_dir="$(cd "$xml_dir" && pwd)"
        origin_cond="AND origin = '$xml_dir/netmeta_dictionary.xml'"
    fi
    "$CH_CLIENT" "${CH_ARGS[@]}" --query "SELECT 1" > /dev/null || die "cannot query the server"
    # as NetMeta: SELECT * FROM dictionaries.InterfaceNames shows a dictionary as a table
    "$CH_CLIENT" "${CH_ARGS[@]}" --query "CREATE DATABASE IF NOT EXISTS dictionaries ENGINE = Dictionary" ||
        echo "clickhouse.sh: note: no database 'dictionaries' (ENGINE = Dictionary); the dictionaries work without it" >&2
    for _ in $(seq 1 "${NM_CH_DICT_TIMEOUT:-30}"); do
        if [ "$variant" = json ]; then
            "$CH_CLIENT" "${CH_ARGS[@]}" --query "SYSTEM RELOAD DICTIONARIES" > /dev/null 2>&1 || true
        fi
        got="$("$CH_CLIENT" "${CH_ARGS[@]}" --query "SELECT name, element_count FROM system.dictionaries
                 WHERE name IN ('InterfaceNames', 'Exporters') AND length(last_exception) = 0
                 $origin_cond ORDER BY name" 2>/dev/null | tr '\t\n' ': ' || true)"
        [ "$got" = "$want" ] && break
        sleep 1
    done
    if [ "$got" != "$want" ]; then
        "$CH_CLIENT" "${CH_ARGS[@]}" --query "SELECT name, origin, element_count, last_exception
            FROM system.dictionaries WHERE name IN ('InterfaceNames', 'Exporters')" >&2 || true
        [ "$variant" = json ] && echo "clickhouse.sh: does the server's <dictionaries_config> cover" \
            "$xml_dir/netmeta_dictionary.xml?" >&2
        die "dictionaries did not load from $dict_dir: want ${want}, loaded: ${got:-none}"
    fi
    echo "dictionaries loaded (${got% }) from $dict_dir"
}

cmd_query() {
    [ $# -ge 2 ] || usage
    client_args "$1"
    "$CH_CLIENT" "${CH_ARGS[@]}" --query "$2"
}

cmd_prune() {
    [ $# -ge 1 ] || usage
    local days="${2:-${NM_CH_RETENTION_DAYS:-7}}" part
    [[ "$days" =~ ^[0-9]+$ ]] || die "DAYS must be a number: $days"
    client_args "$1"
    for part in $("$CH_CLIENT" "${CH_ARGS[@]}" --query "SELECT DISTINCT partition_id FROM system.parts
            WHERE database = currentDatabase() AND table = 'flows_raw' AND active
            AND toUInt32(max_date) + $days < toUInt32(today()) ORDER BY partition_id"); do
        echo "dropping partition $part of flows_raw"
        "$CH_CLIENT" "${CH_ARGS[@]}" --query "ALTER TABLE flows_raw DROP PARTITION ID '$part'"
    done
}

# Sourced (scripts/clickhouse-cluster.sh does, for client_args): the helpers only.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0
[ $# -ge 1 ] || usage
cmd="$1"; shift
case "$cmd" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    apply) cmd_apply "$@" ;;
    sql) cmd_sql "$@" ;;
    dicts) cmd_dicts "$@" ;;
    query) cmd_query "$@" ;;
    prune) cmd_prune "$@" ;;
    cluster) exec "$HERE/clickhouse-cluster.sh" "$@" ;;
    *) usage ;;
esac
