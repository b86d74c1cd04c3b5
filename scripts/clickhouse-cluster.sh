#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# NetMeta's flow schema on a ClickHouse cluster: shards (and replicas) named in <remote_servers>.
# Called as `scripts/clickhouse.sh cluster ...` or directly.
#
#   scripts/clickhouse-cluster.sh config CLUSTER SHARD [SHARD...] [--zookeeper H:P[,H:P...]]
#                                 [--interserver-port PORT]
#       Print a config.d file (XML) for every server of the cluster: <remote_servers> with
#       CLUSTER, one <shard> per SHARD argument, SHARD being its replicas "host:port[,host:port]"
#       (native TCP ports); --zookeeper adds <zookeeper> (needed for ReplicatedMergeTree),
#       --interserver-port adds <interserver_http_port> and <interserver_http_host>127.0.0.1
#       (replicas fetch parts from each other there; a server's own port, so write one file per
#       server when you use it).
#   scripts/clickhouse-cluster.sh apply TARGET CLUSTER VARIANT BROKERS TOPIC [GROUP [INI]]
#       Create the schema on every server of CLUSTER, one server after the other (per host, not
#       ON CLUSTER: distributed DDL needs ZooKeeper, and a cluster without it is a supported
#       set-up). The servers come from TARGET's system.clusters (TARGET: DIR of a server started
#       by clickhouse.sh, or [USER@]HOST:PORT; NM_CH_USER / NM_CH_PASSWORD as clickhouse.sh).
#       On each: flows_raw_local (proto/clickhouse/VARIANT/0001_flows_raw.sql, renamed, with the
#       engine of proto/clickhouse/cluster/engine-*.sql), flows_queue (the variant's Kafka table,
#       consumer group GROUP, default "netmeta", the same on every server so that the topic's
#       partitions are shared among the shards), flows_raw_view (-> flows_raw_local; INI's
#       direction rules in its FlowDirection, as `clickhouse.sh apply` does) and flows_raw
#       (proto/clickhouse/cluster/0100_flows_raw_distributed.sql, Distributed over CLUSTER).
#       Engine: NM_CH_CLUSTER_ENGINE = replicated | plain | auto (default): auto is
#       ReplicatedMergeTree where the server reaches ZooKeeper (system.zookeeper answers), plain
#       MergeTree per shard otherwise. The replication path is
#       NM_CH_ZK_PATH (default /clickhouse/tables/netmeta)/DATABASE/flows_raw_local/shardN, the
#       replica name host_port: no <macros> needed in the servers' configs.
#       Consumers: NM_CH_CLUSTER_CONSUMERS = first (default) puts flows_queue and flows_raw_view
#       on the first replica of each shard only (the others get their rows by replication);
#       "all" on every replica. Why first: a consumer that leaves the group (a crash, a restart)
#       makes the group rebalance, and 18.16's Kafka engine then inserts the block it holds for
#       partitions it just lost while the new owner reads them again from the last commit --
#       rows twice (seen here: 3,881 of 18,072 once, none another time). With one consumer per
#       shard a replica may fail or restart without touching the group.
#   scripts/clickhouse-cluster.sh sql CLUSTER VARIANT BROKERS TOPIC GROUP DATABASE SHARD REPLICA
#                                 ENGINE [INI]
#       Print what apply runs on one server (ENGINE replicated or plain; env CONSUME=0: without
#       the Kafka table and its view, as on a replica that does not consume).
#
# 18.16 (Debian 12) and current releases accept every statement (no ON CLUSTER, no macros).
set -euo pipefail

# clickhouse.sh's settings (HERE, SRC, CH_CLIENT) and helpers (client_args: TARGET -> CH_ARGS);
# die and usage are this script's own, defined after it.
# shellcheck source=scripts/clickhouse.sh
. "$(cd "$(dirname "$0")" && pwd)/clickhouse.sh"
CLUSTER_DDL="$SRC/proto/clickhouse/cluster"

die() { echo "clickhouse-cluster.sh: $*" >&2; exit 1; }

usage() {
    sed -n '4,43p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

xml_host() {
    local hp="$1"
    [[ "$hp" == *:* ]] || die "replica '$hp' is not host:port"
    printf '                <replica><host>%s</host><port>%s</port></replica>\n' \
        "${hp%:*}" "${hp##*:}"
}

cmd_config() {
    [ $# -ge 2 ] || usage
    local cluster="$1" zk="" isport="" shards=() s r hp
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --zookeeper) zk="$2"; shift 2 ;;
            --interserver-port) isport="$2"; shift 2 ;;
            *) shards+=("$1"); shift ;;
        esac
    done
    [ "${#shards[@]}" -ge 1 ] || usage
    [[ "$cluster" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "cluster name must be an identifier: $cluster"
    echo '<?xml version="1.0"?>'
    echo "<!-- Written by scripts/clickhouse-cluster.sh config: cluster $cluster -->"
    echo '<yandex>'
    echo '    <remote_servers>'
    echo "        <$cluster>"
    for s in "${shards[@]}"; do
        echo '            <shard>'
        # a shard's replicas hold the same rows (ReplicatedMergeTree): a Distributed INSERT
        # writes to one and replication copies it
        echo '                <internal_replication>true</internal_replication>'
        IFS=, read -r -a r <<< "$s"
        for hp in "${r[@]}"; do xml_host "$hp"; done
        echo '            </shard>'
    done
    echo "        </$cluster>"
    echo '    </remote_servers>'
    if [ -n "$zk" ]; then
        echo '    <zookeeper>'
        IFS=, read -r -a r <<< "$zk"
        for hp in "${r[@]}"; do
            printf '        <node><host>%s</host><port>%s</port></node>\n' "${hp%:*}" "${hp##*:}"
        done
        echo '    </zookeeper>'
    fi
    if [ -n "$isport" ]; then
        echo "    <interserver_http_port>$isport</interserver_http_port>"
        echo '    <interserver_http_host>127.0.0.1</interserver_http_host>'
    fi
    echo '</yandex>'
}

# subst FILE: the placeholders of the variant files and the cluster templates
subst() {
    sed -e "s|{{KAFKA_BROKERS}}|$BROKERS|g" -e "s|{{KAFKA_TOPIC}}|$TOPIC|g" \
        -e "s|{{KAFKA_GROUP}}|$GROUP|g" -e "s|{{RETENTION_DAYS}}|${NM_CH_RETENTION_DAYS:-7}|g" \
        -e "s|{{CLUSTER}}|$CLUSTER|g" -e "s|{{DATABASE}}|$DATABASE|g" \
        -e "s|{{SHARD}}|$SHARD|g" -e "s|{{REPLICA}}|$REPLICA|g" \
        -e "s|{{ZK_PATH}}|${NM_CH_ZK_PATH:-/clickhouse/tables/netmeta}|g" \
        -e "s|{{FLOW_DIRECTION}}|$DIR_EXPR|g" "$1"
}

# direction INI: DIR_EXPR, the view's FlowDirection (INI's direction rules, as clickhouse.sh)
direction() {
    DIR_EXPR="FlowDirection"
    [ -n "${1:-}" ] || return 0
    [ -f "$1" ] || die "no such file: $1"
    DIR_EXPR="$(python3 "$HERE/clickhouse-dicts.py" -c "$1" --direction "$VARIANT")" ||
        die "clickhouse-dicts.py failed on $1"
}

# The statements for one server on stdout. Needs CLUSTER VARIANT BROKERS TOPIC GROUP DATABASE
# SHARD REPLICA ENGINE set; CONSUME=0 leaves out the Kafka table and its view.
emit_sql() {
    local ddl="$SRC/proto/clickhouse/$VARIANT" engine f out n
    [ -d "$ddl" ] || die "no DDL variant '$VARIANT' (json or protobuf)"
    [ -f "$CLUSTER_DDL/engine-$ENGINE.sql" ] || die "no engine '$ENGINE' (replicated or plain)"
    engine="$(subst "$CLUSTER_DDL/engine-$ENGINE.sql")"
    for f in "$ddl"/*.sql; do
        out="$(subst "$f")"
        case "$(basename "$f")" in
            *flows_raw.sql)
                # the variant's flows_raw becomes the shard's flows_raw_local, with the
                # cluster's engine; the name flows_raw goes to the Distributed table
                n=$(grep -c 'ENGINE = MergeTree()' <<< "$out" || true)
                [ "$n" = 1 ] || die "$f: expected one 'ENGINE = MergeTree()', found $n"
                out="$(sed -e 's/\bflows_raw\b/flows_raw_local/g' \
                           -e "s|ENGINE = MergeTree()|ENGINE = $engine|" <<< "$out")"
                ;;
            *flows_queue.sql)
                [ "${CONSUME:-1}" = 1 ] || continue
                ;;
            *flows_raw_view.sql)
                [ "${CONSUME:-1}" = 1 ] || continue
                n=$(grep -c 'TO flows_raw$' <<< "$out" || true)
                [ "$n" = 1 ] || die "$f: expected one 'TO flows_raw' line, found $n"
                out="$(sed -e 's/\bflows_raw\b/flows_raw_local/g' <<< "$out")"
                ;;
        esac
        printf '%s\n' "$out"
    done
    for f in "$CLUSTER_DDL"/0*.sql; do
        subst "$f"
    done
}

cmd_sql() {
    [ $# -eq 9 ] || [ $# -eq 10 ] || usage
    CLUSTER="$1" VARIANT="$2" BROKERS="$3" TOPIC="$4" GROUP="$5" DATABASE="$6" SHARD="$7"
    REPLICA="$8" ENGINE="$9"
    direction "${10:-}"
    emit_sql
}

cmd_apply() {
    [ $# -ge 5 ] || usage
    local target="$1" servers host port shard rnum line host_args want zk_ok
    CLUSTER="$2" VARIANT="$3" BROKERS="$4" TOPIC="$5" GROUP="${6:-netmeta}"
    direction "${7:-}"
    client_args "$target"
    servers="$("$CH_CLIENT" "${CH_ARGS[@]}" --query "SELECT shard_num, replica_num, host_name,
        port FROM system.clusters WHERE cluster = '$CLUSTER' ORDER BY shard_num, replica_num")" ||
        die "cannot read system.clusters from $target"
    [ -n "$servers" ] || die "$target has no cluster '$CLUSTER' in <remote_servers>"
    # the target's login (user, password) is used for every server of the cluster
    local login=("${CH_ARGS[@]:4}")
    while IFS=$'\t' read -r shard rnum host port; do
        host_args=(--host "$host" --port "$port" "${login[@]}")
        DATABASE="$("$CH_CLIENT" "${host_args[@]}" --query "SELECT currentDatabase()")" ||
            die "cannot reach $host:$port (shard $shard replica $rnum)"
        SHARD="$shard"
        REPLICA="${host//[^A-Za-z0-9.-]/_}_$port"
        want="${NM_CH_CLUSTER_ENGINE:-auto}"
        if [ "$want" = auto ]; then
            zk_ok=0
            "$CH_CLIENT" "${host_args[@]}" --query \
                "SELECT count() FROM system.zookeeper WHERE path = '/'" > /dev/null 2>&1 && zk_ok=1
            if [ "$zk_ok" = 1 ]; then want=replicated; else want=plain; fi
        fi
        ENGINE="$want"
        CONSUME=1
        [ "$rnum" = 1 ] || [ "${NM_CH_CLUSTER_CONSUMERS:-first}" = all ] || CONSUME=0
        echo "clickhouse-cluster.sh: $host:$port shard $shard replica $rnum: flows_raw_local" \
             "$( [ "$ENGINE" = replicated ] && echo "ReplicatedMergeTree (replica $REPLICA)" ||
                 echo MergeTree)," \
             "$( [ "$CONSUME" = 1 ] && echo "flows_queue (group $GROUP), flows_raw_view," ||
                 echo "no consumer (replication only),")" \
             "flows_raw -> Distributed($CLUSTER)" >&2
        line="$(emit_sql)"
        "$CH_CLIENT" "${host_args[@]}" --multiquery --query "$line" ||
            die "applying the cluster schema on $host:$port failed"
    done <<< "$servers"
}

[ $# -ge 1 ] || usage
cmd="$1"; shift
case "$cmd" in
    config) cmd_config "$@" ;;
    apply) cmd_apply "$@" ;;
    sql) cmd_sql "$@" ;;
    *) usage ;;
esac
