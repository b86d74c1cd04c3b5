-- SPDX-License-Identifier: BSD-3-Clause
-- The Kafka engine table for the engine's default output ([kafka] format = protobuf): Kafka
-- messages holding many length-delimited FlowMessages of proto/flow.proto (format "Protobuf").
-- Debian 12's clickhouse-server 18.16 has no Protobuf format (nor IPv6): it accepts this table
-- (IPv6 -> FixedString(16)) but could not read from it; the tested path on 18.16 is ../json.
--
-- ClickHouse matches columns to FlowMessage fields by name (case-insensitively), so the columns
-- carry the proto's names (Type, Etype, IngressVrfID, ...) and the view renames them to NetMeta's.
-- Fields without a column (MPLS, ObservationDomainID) are skipped; a message without Flows (an
-- older engine, goflow) reads 0 there and the view stores 1. flow.proto must be in the
-- server's format_schema_path (scripts/clickhouse.sh apply copies it there for a server it
-- started; otherwise copy proto/flow.proto there yourself).
-- Addresses are 16-byte protobuf bytes (IPv4 as ::ffff:a.b.c.d), read directly into IPv6.
--
-- A new consumer group must start at the beginning of the topic: put into the server config
--     <kafka><auto_offset_reset>smallest</auto_offset_reset></kafka>
CREATE TABLE IF NOT EXISTS flows_queue
(
    Type             Enum8('FLOWUNKNOWN' = 0, 'SFLOW_5' = 1, 'NETFLOW_V5' = 2, 'NETFLOW_V9' = 3, 'IPFIX' = 4),
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
    Etype            UInt16,
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
    IngressVrfID     UInt32,
    EgressVrfID      UInt32,
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
    Flows            UInt64
) ENGINE = Kafka()
SETTINGS
    kafka_broker_list = '{{KAFKA_BROKERS}}',
    kafka_topic_list = '{{KAFKA_TOPIC}}',
    kafka_group_name = '{{KAFKA_GROUP}}',
    kafka_format = 'Protobuf',
    kafka_schema = 'flow.proto:FlowMessage',
    kafka_max_block_size = 1048576;
