-- SPDX-License-Identifier: BSD-3-Clause
-- flows_queue -> flows_raw. The engine already sends IPv4 as ::ffff:a.b.c.d (NetMeta's
-- "RFC-compliant 4in6"), so unlike goflow's output no address rewriting is needed here.
-- Checked on 18.16 with IPv6 -> FixedString(16) and the queue as a Memory table: one row goes
-- through with every renamed column in place (tests/integration/test_clickhouse_dicts.py).
-- NetMeta's view does more, on purpose not here: ParseAddress (goflow's IPv4 padding; the engine
-- sends ::ffff:a.b.c.d already), SrcAS/DstAS from its risinfo dictionary when 0 (no such
-- dictionary here), SamplingRate from its SamplerConfig dictionary (the engine applies
-- [exporter.NAME] sampling_rate itself; the Exporters dictionary shows it) and AnonymizeAddresses.
-- The stored FlowDirection (placeholder FLOW_DIRECTION in double braces): as sent, or, for
-- exporters with outward_interfaces in netmeta.ini (scripts/clickhouse.sh apply/sql with the
-- ini), 0 when the row entered through an outward interface and 1 otherwise, so
-- isIncomingFlow() (FlowDirection = 0) gives sFlow, which carries no direction, one.
CREATE MATERIALIZED VIEW IF NOT EXISTS flows_raw_view TO flows_raw
AS SELECT
    toDate(TimeReceived) AS Date,
    Type                 AS FlowType,
    SequenceNum,
    TimeReceived,
    SamplingRate,
    {{FLOW_DIRECTION}} AS FlowDirection,
    SamplerAddress,
    TimeFlowStart,
    TimeFlowEnd,
    Bytes,
    Packets,
    SrcAddr,
    DstAddr,
    Etype                AS EType,
    Proto,
    SrcPort,
    DstPort,
    InIf,
    OutIf,
    SrcMac,
    DstMac,
    SrcVlan,
    DstVlan,
    VlanId,
    IngressVrfID         AS IngressVrfId,
    EgressVrfID          AS EgressVrfId,
    IPTos,
    ForwardingStatus,
    IPTTL,
    TCPFlags,
    IcmpType,
    IcmpCode,
    IPv6FlowLabel,
    FragmentId,
    FragmentOffset,
    BiFlowDirection,
    SrcAS,
    DstAS,
    NextHop,
    NextHopAS,
    SrcNet,
    DstNet,
    if(Flows = 0, 1, Flows) AS Flows
FROM flows_queue;
