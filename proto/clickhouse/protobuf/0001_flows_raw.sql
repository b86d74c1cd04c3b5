-- SPDX-License-Identifier: BSD-3-Clause
-- flows_raw for current ClickHouse (IPv6 type, table TTL, Protobuf format): NetMeta's flows_raw
-- (deploy/single-node/schema/0001_create_flows_raw.sql), column for column.
-- Checked here on 18.16 only as far as it goes (tests/integration/test_clickhouse_dicts.py):
-- with IPv6 -> FixedString(16) and without the TTL line it is created and equals ../json's
-- flows_raw; 18.16 has neither the IPv6 type nor TTL.
--
-- Retention knob: {{RETENTION_DAYS}} days (scripts/clickhouse.sh apply substitutes
-- NM_CH_RETENTION_DAYS, default 7 = NetMeta's "TTL Date + INTERVAL 1 WEEK"). Change later with
--     ALTER TABLE flows_raw MODIFY TTL Date + INTERVAL 90 DAY
CREATE TABLE IF NOT EXISTS flows_raw
(
    Date             Date,

    FlowType         Enum8('FLOWUNKNOWN' = 0, 'SFLOW_5' = 1, 'NETFLOW_V5' = 2, 'NETFLOW_V9' = 3, 'IPFIX' = 4),

    SequenceNum      UInt64,

    TimeReceived     UInt64,
    SamplingRate     UInt64,

    FlowDirection    UInt8,

    SamplerAddress   IPv6,

    TimeFlowStart    UInt64,
    TimeFlowEnd      UInt64,

    Bytes            UInt64,
    Packets          UInt64,

    SrcAddr          IPv6,
    DstAddr          IPv6,

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

    NextHop          IPv6,
    NextHopAS        UInt32,

    SrcNet           UInt8,
    DstNet           UInt8,

    -- Not in NetMeta's table: the records merged into this row (FlowMessage Flows, field 2000).
    -- DEFAULT 1: rows written by NetMeta's own view (goflow, no such field) count as one record.
    -- count() counts rows; sum(Flows) counts the exporters' flow records.
    Flows            UInt64 DEFAULT 1
) ENGINE = MergeTree()
PARTITION BY Date
ORDER BY (TimeReceived, FlowDirection, SamplerAddress, SrcAS, DstAS, SrcAddr, DstAddr)
TTL Date + INTERVAL {{RETENTION_DAYS}} DAY;
