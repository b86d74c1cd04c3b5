-- SPDX-License-Identifier: BSD-3-Clause
-- Moves every row the Kafka table reads into flows_raw, converting JSON types to NetMeta's:
-- text addresses to their 16 bytes (IPv4 arrives as ::ffff:a.b.c.d, so IPv6StringToNum reads every
-- address), the FlowType number to the enum, proto field names to NetMeta's column names
-- (Type -> FlowType, Etype -> EType, IngressVrfID -> IngressVrfId, EgressVrfID -> EgressVrfId).
-- MPLS fields and ObservationDomainID are read but, as in NetMeta, not stored. Flows (records
-- merged into the row) is stored; 0 (a producer without the key) becomes 1.
-- The stored FlowDirection (placeholder FLOW_DIRECTION in double braces): as sent, or, for
-- exporters with outward_interfaces in netmeta.ini (scripts/clickhouse.sh apply/sql with the
-- ini), 0 when the row entered through an outward interface and 1 otherwise, so
-- isIncomingFlow() (FlowDirection = 0) gives sFlow, which carries no direction, one.
CREATE MATERIALIZED VIEW IF NOT EXISTS flows_raw_view TO flows_raw
AS SELECT
    toDate(TimeReceived)                     AS Date,
    CAST(Type AS Enum8('FLOWUNKNOWN' = 0, 'SFLOW_5' = 1, 'NETFLOW_V5' = 2, 'NETFLOW_V9' = 3, 'IPFIX' = 4)) AS FlowType,
    toUInt64(SequenceNum)                    AS SequenceNum,
    TimeReceived,
    SamplingRate,
    toUInt8({{FLOW_DIRECTION}})              AS FlowDirection,
    IPv6StringToNum(SamplerAddress)          AS SamplerAddress,
    TimeFlowStart,
    TimeFlowEnd,
    Bytes,
    Packets,
    IPv6StringToNum(SrcAddr)                 AS SrcAddr,
    IPv6StringToNum(DstAddr)                 AS DstAddr,
    toUInt16(Etype)                          AS EType,
    toUInt8(Proto)                           AS Proto,
    SrcPort,
    DstPort,
    InIf,
    OutIf,
    SrcMac,
    DstMac,
    SrcVlan,
    DstVlan,
    VlanId,
    IngressVrfID                             AS IngressVrfId,
    EgressVrfID                              AS EgressVrfId,
    toUInt8(IPTos)                           AS IPTos,
    toUInt8(ForwardingStatus)                AS ForwardingStatus,
    toUInt8(IPTTL)                           AS IPTTL,
    toUInt8(TCPFlags)                        AS TCPFlags,
    toUInt8(IcmpType)                        AS IcmpType,
    toUInt8(IcmpCode)                        AS IcmpCode,
    IPv6FlowLabel,
    FragmentId,
    FragmentOffset,
    toUInt8(BiFlowDirection)                 AS BiFlowDirection,
    SrcAS,
    DstAS,
    IPv6StringToNum(NextHop)                 AS NextHop,
    NextHopAS,
    toUInt8(SrcNet)                          AS SrcNet,
    toUInt8(DstNet)                          AS DstNet,
    if(Flows = 0, 1, Flows)                  AS Flows
FROM flows_queue;
