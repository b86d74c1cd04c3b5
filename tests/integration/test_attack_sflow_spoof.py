#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Attack: a host that is not the router sends sFlow datagrams naming the router as their agent.

The router is pmacctd's sFlow probe of the corpus (generated/pmacctd-sfprobe-sflow5.pcap, agent
127.0.0.1 sending from 127.0.0.1), configured as [exporter.edge] with a sampling-rate override of
1000. The attacker (198.51.100.66) replays every one of the router's datagrams, payload
unchanged, from its own address, interleaved with the real ones. Two engine runs on net_pcap:
the router alone, then router + attacker. Asserted:
  - the router's rows (SamplerAddress 127.0.0.1): packets, bytes and rates by rate identical in
    both runs, every one at the override 1000;
  - the attacker's rows are credited to 198.51.100.66, at the rate its datagrams announce,
    never at the router's override;
  - every spoofed datagram is counted: summary sflow_agent_mismatch == attacker datagrams, and 0
    in the router-only run.
A third run on the attacked capture with [collector] allow = 127.0.0.0/8: the attacker's
datagrams are refused before decoding (summary refused == attacker datagrams, no row and no
mismatch for it), the router's rows unchanged.
Without the attribution check the router's rows double and the test fails. About 10 s.
"""
import os
import socket
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dptest  # noqa: E402
import nmtest  # noqa: E402

CAPTURE = "generated/pmacctd-sfprobe-sflow5.pcap"
ROUTER = socket.inet_aton("127.0.0.1")
EVIL = socket.inet_aton("198.51.100.66")
CONFIG = """[exporter.edge]
address = 127.0.0.1
sampling_rate = 1000
"""


def respoof(frame, src):
    """The same Ethernet/IPv4/UDP frame from another IPv4 source (checksums redone)."""
    ip_off = 14
    ihl = (frame[ip_off] & 15) * 4
    ip = bytearray(frame[ip_off:ip_off + ihl])
    ip[12:16] = src
    ip[10:12] = b"\0\0"
    ip[10:12] = struct.pack("!H", dptest.csum(bytes(ip)))
    udp = bytearray(frame[ip_off + ihl:])
    udp[6:8] = b"\0\0"  # no UDP checksum (allowed over IPv4)
    return frame[:ip_off] + bytes(ip) + bytes(udp)


def by_sampler(rows):
    """{(SamplerAddress text, SamplingRate): (packets, bytes)}"""
    return dptest.sums(rows, key=lambda r: (nmtest.addr_text(r["SamplerAddress"]),
                                            r["SamplingRate"]))


def main():
    nmtest.exit_on_signals()
    nmtest.require_corpora()
    path = os.path.join(nmtest.CORPORA, CAPTURE)
    if not os.path.exists(path):
        nmtest.skip("%s absent" % path)
    frames = dptest.read_pcap(path)
    mixed = []
    for ts, us, data, _ in frames:
        assert data[26:30] == ROUTER, "capture's source is not 127.0.0.1"
        mixed.append((ts, us, data))
        mixed.append((ts, us, respoof(data, EVIL)))
    tmp = tempfile.mkdtemp(prefix="nm-attack-sflow-")
    attacked = os.path.join(tmp, "attacked.pcap")
    dptest.write_pcap(attacked, mixed)
    cfg = os.path.join(tmp, "netmeta.ini")
    with open(cfg, "w") as f:
        f.write(CONFIG)

    problems = []
    with nmtest.MockBroker() as broker:
        res = {}
        for name, pcap, sets in (("router", path, ()), ("attacked", attacked, ()),
                                 ("allowed", attacked, ("collector.allow=127.0.0.0/8",))):
            topic = "attack-sflow-%s-%d" % (name, os.getpid())
            run = nmtest.run_engine(pcap, broker.bootstrap, topic=topic, config=cfg,
                                    ports="6343", sets=sets)
            if run.rc != 0 or run.summary is None:
                raise RuntimeError("engine run %s failed (%s):\n%s" % (name, run.rc, run.tail()))
            rows = dptest.kafka_rows(broker.bootstrap, topic)
            res[name] = (run.summary, by_sampler(rows))
            nmtest.log("%-9s rows %d, by (sampler, rate): %s; sflow_agent_mismatch %d"
                       % (name, len(rows), res[name][1], run.summary["sflow_agent_mismatch"]))
    (s0, g0), (s1, g1), (s2, g2) = res["router"], res["attacked"], res["allowed"]
    router_rows0 = {k: v for k, v in g0.items() if k[0] == "::ffff:127.0.0.1"}
    router_rows1 = {k: v for k, v in g1.items() if k[0] == "::ffff:127.0.0.1"}
    evil_rows = {k: v for k, v in g1.items() if k[0] == "::ffff:198.51.100.66"}
    if not router_rows0 or set(k[1] for k in router_rows0) != {1000}:
        problems.append("router alone: rows %r, expected all at the override 1000" % g0)
    if router_rows1 != router_rows0:
        problems.append("router's rows changed under attack: %r -> %r" % (router_rows0,
                                                                           router_rows1))
    if set(g1) - set(router_rows1) - set(evil_rows):
        problems.append("rows of other samplers: %r" % g1)
    if not evil_rows or any(k[1] == 1000 for k in evil_rows):
        problems.append("attacker's rows %r: expected at its own announced rates" % evil_rows)
    ev_pk = sum(v[0] for v in evil_rows.values())
    r_pk = sum(v[0] for v in router_rows0.values())
    if ev_pk != r_pk:
        problems.append("attacker's packets %d, expected %d (its datagrams are copies)"
                        % (ev_pk, r_pk))
    if s0["sflow_agent_mismatch"] != 0 or s1["sflow_agent_mismatch"] != len(frames):
        problems.append("sflow_agent_mismatch %d / %d, expected 0 / %d"
                        % (s0["sflow_agent_mismatch"], s1["sflow_agent_mismatch"], len(frames)))
    if g2 != router_rows0:
        problems.append("with allow: rows %r, expected the router's alone %r" % (g2, router_rows0))
    if s2["refused"] != len(frames) or s2["sflow_agent_mismatch"] != 0 or s1["refused"] != 0:
        problems.append("refused %d (allow) / %d (no allow), mismatch %d: expected %d / 0 / 0"
                        % (s2["refused"], s1["refused"], s2["sflow_agent_mismatch"], len(frames)))
    if problems:
        for p in problems:
            nmtest.log("FAIL:", p)
        return 1
    nmtest.log("OK: %d spoofed datagrams credited to their source, router unchanged" % len(frames))
    return 0


if __name__ == "__main__":
    sys.exit(main())
