-- SPDX-License-Identifier: BSD-3-Clause
-- The Kafka engine table the engine's JSON output lands in (netmeta.ini: [kafka] format = json).
-- One JSON object per line; the keys are proto/flow.proto's field names and every field is
-- present; Type is the FlowType number, HasMPLS is 0/1, addresses are text ("::ffff:10.0.0.1",
-- "2001:db8::1"). Columns must name every key: 18.16's JSONEachRow rejects unknown keys.
-- Integer columns are as wide as the proto field, so no value is cut before the view converts it.
--
-- A new consumer group must start at the beginning of the topic, or every message produced before
-- this table existed is skipped: librdkafka's default auto.offset.reset is "latest", and 18.16 has
-- no per-table setting for it. Put into the server's config.xml (scripts/clickhouse.sh start does):
--     <kafka><auto_offset_reset>smallest</auto_offset_reset></kafka>
--
-- No kafka_row_delimiter: every message already ends each row with '\n'. With a delimiter, 18.16
-- hands it to the parser as a buffer of its own before the next message, and when that message
-- arrives during the parser's last end-of-input poll (after a pause in the stream) the parser
-- meets the '\n' where it expects '{': "Cannot parse input: expected { before: \n". The consumer
-- then leaves and rejoins its group; alone it only reads the block again, but in a group shared by
-- several servers the rebalance makes the others insert rows twice (test_cluster_clickhouse).
CREATE TABLE IF NOT EXISTS flows_queue
(
    Type                UInt8,
    TimeReceived        UInt64,
    SequenceNum         UInt32,
    SamplingRate        UInt64,
    FlowDirection       UInt32,
    SamplerAddress      String,
    TimeFlowStart       UInt64,
    TimeFlowEnd         UInt64,
    Bytes               UInt64,
    Packets             UInt64,
    SrcAddr             String,
    DstAddr             String,
    Etype               UInt32,
    Proto               UInt32,
    SrcPort             UInt32,
    DstPort             UInt32,
    InIf                UInt32,
    OutIf               UInt32,
    SrcMac              UInt64,
    DstMac              UInt64,
    SrcVlan             UInt32,
    DstVlan             UInt32,
    VlanId              UInt32,
    IngressVrfID        UInt32,
    EgressVrfID         UInt32,
    IPTos               UInt32,
    ForwardingStatus    UInt32,
    IPTTL               UInt32,
    TCPFlags            UInt32,
    IcmpType            UInt32,
    IcmpCode            UInt32,
    IPv6FlowLabel       UInt32,
    FragmentId          UInt32,
    FragmentOffset      UInt32,
    BiFlowDirection     UInt32,
    SrcAS               UInt32,
    DstAS               UInt32,
    NextHop             String,
    NextHopAS           UInt32,
    SrcNet              UInt32,
    DstNet              UInt32,
    HasMPLS             UInt8,
    MPLSCount           UInt32,
    MPLS1TTL            UInt32,
    MPLS1Label          UInt32,
    MPLS2TTL            UInt32,
    MPLS2Label          UInt32,
    MPLS3TTL            UInt32,
    MPLS3Label          UInt32,
    MPLSLastTTL         UInt32,
    MPLSLastLabel       UInt32,
    ObservationDomainID UInt32,
    Flows               UInt64
) ENGINE = Kafka
SETTINGS
    kafka_broker_list = '{{KAFKA_BROKERS}}',
    kafka_topic_list = '{{KAFKA_TOPIC}}',
    kafka_group_name = '{{KAFKA_GROUP}}',
    kafka_format = 'JSONEachRow',
    kafka_num_consumers = 1;
