#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""SIGTERM in the middle of a live run loses nothing.

A net_af_packet mirror port (1:1) on a veth pair inside a network namespace created here; a
raw-socket replay of a generated capture (120,000 64-byte frames from 20,000 random sources, so
the 1024-key tables of this run fold) is running from the peer end when the engine gets SIGTERM.
Kafka is a mock broker inside the namespace, read back with kcat there.

Asserted:
 - while it runs, telemetry (/netmeta/stats through scripts/netmeta-stats) answers with the
   agg_* keys and shows the folding (agg_folded > 0);
 - SIGTERM came in the middle: the engine received some but not all of the frames sent;
 - the engine exits 0 (RX stopped, tables flushed, Kafka acknowledged everything);
 - Kafka against what the test sent: every row is one generated frame, told apart by (source,
   source port, IP identification), with its generated size, at most once, or the overflow
   entry of folded frames (as many as agg_folded, of the generated size); the frames told apart
   are all among the first N sent, N = the frames in Kafka (the head of the stream, in order);
   some but not all of the frames sent (SIGTERM in the middle); the replay sent every generated
   frame;
 - at 1:1, Kafka's packets and bytes are every frame the port received (rx_packets, rx_bytes);
   lost 0, agg_dropped 0, rows == acknowledged == FlowMessages on the topic.
"""
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402
import dptest  # noqa: E402

FRAMES, SOURCES = 120000, 20000
problems = []


def fail(msg):
    problems.append(msg)
    print("FAIL: " + msg, flush=True)


def main():
    nmtest.exit_on_signals()
    nmtest.require_programs(nmtest.ENGINE, "kcat")
    if not dptest.have_netns():
        nmtest.skip("needs root and ip netns")
    tmp = tempfile.mkdtemp(prefix="nmdp-shut-")
    pcap = os.path.join(tmp, "stream.pcap")
    rnd = random.Random(7)
    srcs = [struct.pack("!I", a) for a in rnd.sample(range(1 << 24, 0xDF000000), SOURCES)]
    frames = [dptest.udp_frame(srcs[i % SOURCES], bytes([192, 0, 2, 1]), 1024 + i % 50000, 53,
                               ident=i) for i in range(FRAMES)]
    dptest.write_pcap(pcap, [(1700000000, i, f) for i, f in enumerate(frames)])
    sizes = {len(f) for f in frames}
    assert len(sizes) == 1, sizes
    frame_len = sizes.pop()
    # every frame is told apart by (source, source port, IP identification): i mod 20000,
    # 50000 and 65536 together fix i below 120,000; each is a key of its own in the tables
    index = {(socket.inet_ntoa(srcs[i % SOURCES]), 1024 + i % 50000, i & 0xFFFF): i
             for i in range(FRAMES)}
    assert len(index) == FRAMES
    prefix = nmtest.file_prefix()
    with dptest.Netns("sh") as ns, dptest.NetnsBroker(ns.name) as broker:
        print("namespace %s, veth %s <-> %s, mock broker %s" % (ns.name, ns.a, ns.b,
                                                               broker.bootstrap), flush=True)
        cfg = ("[eal]\nargs = -l 0-1\n[mirror]\nsample_rate = 1\n[aggregation]\nmax_flows = 1024\n"
               "[port.live]\ndevice = net_af_packet0,iface=%s\nrole = mirror-rx\n" % ns.a)
        # not --in-memory: the telemetry socket lives under /var/run/dpdk/<prefix>/
        proc = nmtest.start_engine(broker.bootstrap, "shutdown", netns=ns.name, config_text=cfg,
                                   in_memory=False, prefix=prefix, huge=True)
        replay = None
        try:
            proc.wait_started()
            replay = subprocess.Popen(["ip", "netns", "exec", ns.name, "python3", "-c",
                                       dptest.REPLAY, ns.b, pcap, "1518"],
                                      stdout=subprocess.PIPE, text=True)
            live = None
            deadline = time.time() + 30
            while time.time() < deadline:
                time.sleep(0.3)
                live = nmtest.telemetry(prefix, "/netmeta/stats")
                if live and live.get("agg_folded", 0) > 0:
                    break
            if live is None:
                fail("telemetry never answered on prefix %s" % prefix)
            else:
                agg = {k: v for k, v in live.items() if k.startswith("agg_")}
                print("live telemetry: rx_packets %d records %d %r" % (
                    live["rx_packets"], live["records"], agg), flush=True)
                if not {"agg_merged", "agg_folded", "agg_dropped"} <= set(agg) or not agg["agg_folded"]:
                    fail("telemetry agg_* keys %r: expected merged/folded/dropped, folding > 0" % agg)
            if replay.poll() is not None:
                fail("the replay ended before SIGTERM: not a mid-run stop")
            proc.send_signal(signal.SIGTERM)
            t_sig = time.time()
        except Exception:
            proc.kill()
            raise
        finally:
            if replay is not None:
                out, _ = replay.communicate(timeout=120)
        run = proc.finish(timeout=120)
        sent = tuple(int(x) for x in out.split())
        s = run.summary
        print("engine exit %s %.1f s after SIGTERM; replay sent %r" % (run.rc, time.time() - t_sig,
                                                                       sent), flush=True)
        if run.rc != 0 or s is None:
            fail("exit %s\n%s" % (run.rc, run.tail(30)))
        else:
            rows = broker.rows("shutdown")
            pk, by = dptest.sums(rows)
            print("summary: rx %d/%d records %d/%d rows %d acked %d lost %d agg_folded %d "
                  "agg_dropped %d; Kafka: %d rows, %d packets, %d bytes" % (
                      s["rx_packets"], s["rx_bytes"], s["records_packets"], s["records_bytes"],
                      s["rows"], s["kafka_records_acked"], s["lost_records"], s["agg_folded"],
                      s["agg_dropped"], len(rows), pk, by), flush=True)
            # against what was sent: every row is one sent frame (its own key) or the overflow
            # entry of folded frames; sizes as generated; frames as sent, each at most once
            seen, folded, bad = [], [0, 0], []
            for r in rows:
                src = nmtest.addr_text(r["SrcAddr"]) if r["SrcAddr"] else "::"
                if r["SrcPort"] == 0 and r["FragmentId"] == 0 and src in ("::", "::ffff:0.0.0.0"):
                    folded[0] += r["Packets"]
                    folded[1] += r["Bytes"]
                    continue
                i = index.get((src.replace("::ffff:", ""), r["SrcPort"], r["FragmentId"]))
                if i is None or r["Packets"] != 1 or r["Bytes"] != frame_len or \
                        nmtest.addr_text(r["DstAddr"]) != "::ffff:192.0.2.1" or \
                        (r["DstPort"], r["Proto"]) != (53, 17):
                    bad.append(r)
                else:
                    seen.append(i)
            last = max(seen) if seen else -1
            print("Kafka against the %d frames sent: %d frames told apart (the last of them sent "
                  "as frame %d), %d folded (%d bytes)" % (sent[0], len(seen), last, folded[0],
                                                         folded[1]), flush=True)
            if sent != (FRAMES, FRAMES * frame_len):
                fail("the replay sent %r, the test generated %d frames of %d bytes"
                     % (sent, FRAMES, frame_len))
            if bad:
                fail("%d Kafka rows are no frame the test sent, e.g. %r" % (len(bad), bad[0]))
            if len(set(seen)) != len(seen):
                fail("%d frames appear twice in Kafka" % (len(seen) - len(set(seen))))
            if folded[1] != folded[0] * frame_len:
                fail("folded rows: %d packets of %d bytes, not %d-byte frames"
                     % (folded[0], folded[1], frame_len))
            if not 0 < pk < sent[0] or by != pk * frame_len:
                fail("SIGTERM was not in the middle, or sizes differ: Kafka %d packets %d bytes "
                     "of %d frames of %d bytes sent" % (pk, by, sent[0], frame_len))
            # the port saw the stream from its start, in order: every frame told apart is one
            # of the first pk sent (the folded ones are the rest of them)
            if last >= pk:
                fail("frame %d is in Kafka, but Kafka holds only %d frames: not the head of the "
                     "stream that was sent" % (last, pk))
            if folded[0] != s["agg_folded"]:
                fail("%d frames in overflow rows, the summary says %d were folded"
                     % (folded[0], s["agg_folded"]))
            # the engine's side of the same count: Kafka holds every frame the port received
            if (pk, by) != (s["rx_packets"], s["rx_bytes"]):
                fail("Kafka %d/%d != received %d/%d at 1:1" % (pk, by, s["rx_packets"],
                                                              s["rx_bytes"]))
            if s["lost_records"] or s["agg_dropped"] or not (
                    s["rows"] == s["kafka_records_acked"] == len(rows)):
                fail("lost %d dropped %d rows %d acked %d topic %d" % (
                    s["lost_records"], s["agg_dropped"], s["rows"], s["kafka_records_acked"],
                    len(rows)))
    shutil.rmtree("/var/run/dpdk/" + prefix, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    print()
    if problems:
        print("%d problem(s)" % len(problems))
        return 1
    print("SIGTERM mid-run: nothing lost")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.exit(1)
