-- SPDX-License-Identifier: BSD-3-Clause
-- flows_raw for ClickHouse releases without the IPv6 type and the Protobuf format (Debian 12's
-- clickhouse-server 18.16). Same column names, order key and partitioning as NetMeta's flows_raw;
-- the address columns (SamplerAddress, SrcAddr, DstAddr, NextHop) are FixedString(16) holding the
-- same 16 bytes an IPv6 column holds (IPv4 as ::ffff:a.b.c.d). Read them with
-- IPv6NumToString(SrcAddr); filter with SrcAddr = IPv6StringToNum('::ffff:10.0.0.1').
--
-- Retention ({{RETENTION_DAYS}} days): 18.16 has no table TTL (it came in 19.6; "TTL Date +
-- INTERVAL n DAY" is a syntax error here). Old data goes by dropping whole daily partitions:
--     ALTER TABLE flows_raw DROP PARTITION '2024-01-31'
-- which `scripts/clickhouse.sh prune DIR|HOST:PORT [DAYS]` does for every partition older than
-- DAYS (default {{RETENTION_DAYS}}); run it daily (cron/systemd timer). On ClickHouse >= 19.6 use
-- the protobuf variant, or add: TTL Date + INTERVAL {{RETENTION_DAYS}} DAY
CREATE TABLE IF NOT EXISTS flows_raw
(
    Date             Date,

    FlowType         Enum8('FLOWUNKNOWN' = 0, 'SFLOW_5' = 1, 'NETFLOW_V5' = 2, 'NETFLOW_V9' = 3, 'IPFIX' = 4),

    SequenceNum      UInt64,

    TimeReceived     UInt64,
    SamplingRate     UInt64,

    FlowDirection    UInt8,

    SamplerAddress   FixedString(16),

    TimeFlowStart    UInt64,
    TimeFlowEnd      UInt64,

    Bytes            UInt64,
    Packets          UInt64,

    SrcAddr          FixedString(16),
    DstAddr          FixedString(16),

    EType            UInt16,

    Proto            UInt8,

    SrcPort          UInt32,
    DstPort          UInt32,

    InIf             UInt32,
    OutIf            UInt32,

    SrcMac           UInt64,
    DstMac           UInt64,

    SrcVlan          UInt32,
    DstVlan          UInt32,
    VlanId           UInt32,

    IngressVrfId     UInt32,
    EgressVrfId      UInt32,

    IPTos            UInt8,
    ForwardingStatus UInt8,
    IPTTL            UInt8,
    TCPFlags         UInt8,
    IcmpType         UInt8,
    IcmpCode         UInt8,
    IPv6FlowLabel    UInt32,

    FragmentId       UInt32,
    FragmentOffset   UInt32,

    BiFlowDirection  UInt8,

    SrcAS            UInt32,
    DstAS            UInt32,

    NextHop          FixedString(16),
    NextHopAS        UInt32,

    SrcNet           UInt8,
    DstNet           UInt8,

    -- Not in NetMeta's table: the records merged into this row (FlowMessage Flows, field 2000).
    -- DEFAULT 1: rows written by NetMeta's own view (goflow, no such field) count as one record.
    -- count() counts rows; sum(Flows) counts the exporters' flow records.
    Flows            UInt64 DEFAULT 1
) ENGINE = MergeTree()
PARTITION BY Date
ORDER BY (TimeReceived, FlowDirection, SamplerAddress, SrcAS, DstAS, SrcAddr, DstAddr);
