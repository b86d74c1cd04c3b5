#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""NetFlow v5 captures -> engine (net_pcap) -> Kafka (mock broker) -> kcat -> independent decoder.

For every TRUTH.tsv row with protocols == nf5 the engine reads the capture offline and produces
length-delimited FlowMessages (kafka.format=protobuf) to a topic of its own. The topic is read back
with kcat and decoded by nmtest's pure-Python protobuf decoder (checked first against
protoc --encode). Asserted, per file:
  - engine exit status 0 and nothing lost;
  - FlowMessages on the topic == summary rows == kafka_records_acked;
  - sum(Packets), sum(Bytes) == TRUTH packets/bytes exactly (rows may be fewer than TRUTH records:
    identical keys within one second merge, their counters add up);
  - every message: Type 2 (NETFLOW_V5), a 16-byte SamplerAddress, SamplingRate >= 1, no field
    outside NetMeta's FlowMessage.
The two logstash captures netflow_5_invalid_01/02 are invalid on purpose: their header's record
count does not match the payload (tshark still sums the garbage it finds there, hence TRUTH's huge
numbers). The engine must reject the datagram: rows == 0, nothing on the topic, and the rejection
counted in the summary's decode_errors.
One valid capture is also run with kafka.format=json and its lines parsed with json.
"""
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402

JSON_CASE = "generated/fprobe-v5.pcap"


def check_messages(msgs, truth, expect_rows, fmt):
    """Common per-message checks; returns (count, packets, bytes, problems)."""
    problems = []
    pk = by = 0
    for i, m in enumerate(msgs):
        pk += m["Packets"]
        by += m["Bytes"]
        if fmt == "protobuf":
            if m["Type"] != 2:
                problems.append("message %d: Type %r, expected 2 (NETFLOW_V5)" % (i, m["Type"]))
            if len(m["SamplerAddress"]) != 16:
                problems.append("message %d: SamplerAddress of %d bytes" % (i, len(m["SamplerAddress"])))
            if m["_unknown"]:
                problems.append("message %d: fields outside FlowMessage %r" % (i, m["_unknown"]))
        else:
            if m.get("Type") != 2:
                problems.append("line %d: Type %r, expected 2" % (i, m.get("Type")))
            sa = m.get("SamplerAddress")
            if not isinstance(sa, str) or not sa or nmtest_addr_bytes(sa) is None:
                problems.append("line %d: SamplerAddress %r is not an address" % (i, sa))
        if not isinstance(m.get("SamplingRate"), int) or m["SamplingRate"] < 1:
            problems.append("message %d: SamplingRate %r < 1" % (i, m.get("SamplingRate")))
        if len(problems) > 10:
            problems.append("... (stopped after 10)")
            break
    if len(msgs) != expect_rows:
        problems.append("%d FlowMessages on the topic, summary says %d rows" % (len(msgs), expect_rows))
    if pk != truth["packets"] or by != truth["bytes"]:
        problems.append("sum(Packets) %d sum(Bytes) %d, TRUTH %d / %d"
                        % (pk, by, truth["packets"], truth["bytes"]))
    return len(msgs), pk, by, problems


def nmtest_addr_bytes(text):
    import socket
    try:
        return socket.inet_pton(socket.AF_INET6, text)
    except OSError:
        return None


def run_case(broker, truth, topic, fmt):
    """Run one capture; returns (table row, problems)."""
    invalid = "invalid" in os.path.basename(truth["file"])
    run = nmtest.run_engine(truth["path"], broker.bootstrap, fmt=fmt, ports=truth["udp_ports"],
                            topic=topic)
    problems = []
    s = run.summary
    if run.rc != 0:
        problems.append("engine exit status %d" % run.rc)
    if s is None:
        problems.append("no summary JSON written")
        return [truth["file"], fmt, truth["packets"], truth["bytes"], truth["records"], "-", "-",
                "FAIL"], problems, run
    payloads = nmtest.kcat_consume(broker.bootstrap, topic)
    msgs = []
    for p in payloads:
        try:
            msgs += nmtest.decode_delimited(p) if fmt == "protobuf" else nmtest.decode_json_lines(p)
        except Exception as e:  # noqa: BLE001 - report any decode failure as a finding
            problems.append("undecodable Kafka message (%d bytes): %s" % (len(p), e))
    errs = {k: v for k, v in s.get("decode_errors", {}).items() if v}
    if invalid:
        # Header count does not match the payload: the datagram must be rejected as a whole.
        if s.get("rows") != 0 or msgs:
            problems.append("invalid capture produced rows=%r, %d messages" % (s.get("rows"), len(msgs)))
        if s.get("records", 0) != 0:
            problems.append("invalid capture yielded %d records" % s["records"])
        if sum(errs.values()) < truth["datagrams"]:
            problems.append("decode_errors %r do not count the %d rejected datagram(s)"
                            % (errs, truth["datagrams"]))
        n, pk, by = len(msgs), sum(m["Packets"] for m in msgs), sum(m["Bytes"] for m in msgs)
        ours = "rejected %s" % ",".join("%s=%d" % kv for kv in sorted(errs.items()))
    else:
        n, pk, by, more = check_messages(msgs, truth, s.get("rows"), fmt)
        problems += more
        if s.get("rows") != s.get("kafka_records_acked"):
            problems.append("rows %r != kafka_records_acked %r" % (s.get("rows"), s.get("kafka_records_acked")))
        if s.get("lost_records", 0) or s.get("kafka_records_failed", 0):
            problems.append("lost_records %r kafka_records_failed %r"
                            % (s.get("lost_records"), s.get("kafka_records_failed")))
        if s.get("records_packets") != truth["packets"] or s.get("records_bytes") != truth["bytes"]:
            problems.append("summary records_packets/bytes %r/%r, TRUTH %d/%d" % (
                s.get("records_packets"), s.get("records_bytes"), truth["packets"], truth["bytes"]))
        if s.get("records") != truth["records"]:
            problems.append("summary records %r, TRUTH records %d" % (s.get("records"), truth["records"]))
        if errs:
            problems.append("decode errors on a valid capture: %r" % errs)
        ours = "ok" if not problems else "FAIL"
    row = [truth["file"], fmt, truth["packets"], truth["bytes"], truth["records"],
           "%s/%s" % (s.get("records"), s.get("rows")), "%d/%d/%d" % (n, pk, by), ours]
    return row, problems, run


def main():
    nmtest.exit_on_signals()
    nmtest.require_corpora()
    nmtest.require_programs(nmtest.ENGINE, "kcat")
    chk = nmtest.protoc_selfcheck()
    print("decoder vs protoc --encode:", chk or "agree", flush=True)

    cases = [(t, "protobuf") for t in nmtest.truth_rows("nf5")]
    if not cases:
        nmtest.skip("TRUTH.tsv has no nf5 rows")
    cases += [(t, "json") for t in nmtest.truth_rows("nf5") if t["file"] == JSON_CASE]
    if len(cases) == len(nmtest.truth_rows("nf5")):
        print("WARNING: %s not in TRUTH.tsv; no JSON case" % JSON_CASE)

    table, failed = [], []
    with nmtest.MockBroker() as broker:
        print("mock broker at %s" % broker.bootstrap, flush=True)
        for i, (truth, fmt) in enumerate(cases):
            topic = "nf5-%d-%s" % (i, fmt)
            try:
                row, problems, run = run_case(broker, truth, topic, fmt)
            except Exception:  # noqa: BLE001
                row = [truth["file"], fmt, truth["packets"], truth["bytes"], truth["records"],
                       "-", "-", "ERROR"]
                problems, run = [traceback.format_exc()], None
            table.append(row)
            if problems:
                failed.append(truth["file"])
                print("FAIL %s (%s):" % (truth["file"], fmt))
                for p in problems:
                    print("    " + p)
                if run is not None:
                    print("    engine: %s\n    --- engine output (tail) ---\n%s" % (
                        " ".join(run.argv), run.tail(25)))
            sys.stdout.flush()

    hdr = ["file", "fmt", "truth pkts", "truth bytes", "truth recs", "records/rows",
           "msgs/pkts/bytes", "result"]
    widths = [max(len(str(r[i])) for r in table + [hdr]) for i in range(len(hdr))]
    print()
    for r in [hdr] + table:
        print("  ".join(str(v).ljust(w) if i in (0, 1, 7) else str(v).rjust(w)
                        for i, (v, w) in enumerate(zip(r, widths))))
    print()
    if failed:
        print("%d of %d cases failed: %s" % (len(failed), len(cases), ", ".join(failed)))
        return 1
    print("all %d cases passed" % len(cases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
