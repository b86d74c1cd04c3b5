#!/usr/bin/env python3
"""The README's first command as a person runs it: in a terminal, on the shipped netmeta.ini.

The engine is started in a pseudo-terminal (it is the session leader of its own pty, so Ctrl-C
typed there is a SIGINT from the terminal driver, as in tmux), with `-c netmeta.ini`: the net_tap
port nm0 (kernel side 169.254.20.1/24, engine 169.254.20.2) and the embedded Kafka broker whose
address it prints. A real exporter, softflowd, reads the corpus' mixed.pcap and exports IPFIX to
the documented address, 169.254.20.2:2055 (the engine's own tap: nothing leaves the machine),
ten times per run, and about a thousand more frames go to a UDP port that is not a collector
port: net_tap raises a real-time signal for every frame the kernel hands it, so each run delivers
over a thousand signals to the process. kcat reads the topic from the embedded broker while the
engine runs; then Ctrl-C must drain and exit 0.

Before the signal policy, librdkafka's mock cluster thread took one of those signals within a
second (its poll() returned EINTR, which it treats as fatal), the broker was gone and every record
was lost. Five runs of a thousand-odd signals each leave no room for passing by luck.

Checked per run:
- the rows kcat reads sum to 10 x TRUTH.tsv's packets and bytes for generated/softflowd-v10.pcap
  (the same exporter, the same input, recorded to a file instead of sent);
- the console's last `kafka acked` equals the rows produced, and the summary says 0 lost, with
  acked == rows and 0 failed/unacked (one set of numbers);
- no "Mock cluster failed" or "Interrupted system call" in the output;
- exit status 0 after one Ctrl-C.
"""
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402

RUNS = int(os.environ.get("NM_TTY_RUNS", "5"))
REPLAYS = 10          # softflowd exports of mixed.pcap per run
NOISE_FRAMES = 1000   # extra UDP frames to a non-collector port per run
ENGINE_ADDR = "169.254.20.2"
IFACE = "nm0"


class Tty:
    """The engine in a pty of its own; output accumulates in self.out."""

    def __init__(self, argv, cwd):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(cwd)
            try:
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        self.out = ""
        self.rc = None

    def pump(self, seconds):
        end = time.time() + seconds
        while True:
            left = end - time.time()
            if left <= 0:
                return
            r, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:   # EIO: the child closed the pty
                    data = b""
                if not data:
                    self.wait(0)
                    return
                self.out += data.decode(errors="replace").replace("\r\n", "\n")

    def wait_for(self, pattern, timeout):
        end = time.time() + timeout
        while time.time() < end:
            m = re.search(pattern, self.out)
            if m:
                return m
            if self.finished():
                break
            self.pump(0.3)
        return re.search(pattern, self.out)

    def ctrl_c(self):
        os.write(self.fd, b"\x03")

    def finished(self):
        if self.rc is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.rc = os.waitstatus_to_exitcode(status)
        return self.rc is not None

    def wait(self, timeout):
        end = time.time() + timeout
        while not self.finished() and time.time() < end:
            self.pump(0.2)
        return self.rc

    def kill(self):
        if not self.finished():
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        try:
            os.close(self.fd)
        except OSError:
            pass


def console_acked(out):
    """The last console line's frames, records, rows and kafka acked."""
    lines = re.findall(r"frames (\d+)\s+datagrams \d+\s+records (\d+)\s+rows (\d+)\s+kafka acked (\d+)", out)
    return tuple(int(x) for x in lines[-1]) if lines else (0, 0, 0, 0)


def one_run(n, truth, mixed, tmp, stop_signal=None):
    prefix = "nmtty%d_%d" % (os.getpid(), n)
    argv = [nmtest.ENGINE, "-c", os.path.join(nmtest.SOURCE, "netmeta.ini"), "--",
            "--file-prefix=" + prefix]
    eng = Tty(argv, nmtest.SOURCE)
    try:
        m = eng.wait_for(r"embedded Kafka broker: (\S+)", 90)
        if not m:
            raise AssertionError("no broker address printed:\n" + eng.out[-3000:])
        bootstrap = m.group(1)
        if not eng.wait_for(r"send exports to " + re.escape(ENGINE_ADDR), 30):
            raise AssertionError("tap not set up:\n" + eng.out[-3000:])
        # The first console line shows the loop runs.
        eng.wait_for(r"\[\s*[\d.]+s\] frames", 10)
        for i in range(REPLAYS):
            p = subprocess.run(["softflowd", "-d", "-r", mixed, "-n", ENGINE_ADDR + ":2055",
                                "-v", "10", "-p", "sfd.pid", "-c", "sfd.ctl"],
                               cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=60)
            if p.returncode != 0:
                raise AssertionError("softflowd exit %d: %s" % (p.returncode, p.stdout))
            eng.pump(0.05)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, IFACE.encode())
        for i in range(NOISE_FRAMES):
            s.sendto(b"not an export %d" % i, (ENGINE_ADDR, 9999))
            if i % 100 == 0:
                eng.pump(0.01)
        s.close()
        want_pkts, want_bytes = REPLAYS * truth["packets"], REPLAYS * truth["bytes"]
        # Rows of a second are produced once it closes: wait until every record arrived, then
        # until two console lines (a second apart, both after the last record's second closed)
        # show the same rows, all acknowledged -- or until nothing moves any more.
        deadline = time.time() + 40
        complete_at, stable = None, 0
        last = None
        while time.time() < deadline and not eng.finished():
            eng.pump(1.0)
            frames, records, rows, acked = console_acked(eng.out)
            if complete_at is None and records >= REPLAYS * truth["records"]:
                complete_at = time.time()
            if complete_at is None or time.time() - complete_at < 1.5:
                continue
            stable = stable + 1 if (rows, acked) == last and acked == rows else 0
            last = (rows, acked)
            if stable >= 1:
                break
        try:
            msgs = nmtest.kcat_consume(bootstrap, timeout=60)
        except RuntimeError as e:
            raise AssertionError("run %d: the embedded broker cannot be read: %s\n--- output "
                                 "tail ---\n%s" % (n, e, eng.out[-4000:]))
        rows = [r for m in msgs for r in nmtest.decode_delimited(m)]
        got_pkts = sum(r.get("Packets", 0) for r in rows)
        got_bytes = sum(r.get("Bytes", 0) for r in rows)
        if stop_signal == signal.SIGHUP:
            # SIGHUP re-reads netmeta.ini (unchanged here): the engine says so and keeps
            # running; SIGTERM stops it.
            os.kill(eng.pid, signal.SIGHUP)
            if not eng.wait_for(r"nothing changed; config version 1 stays live", 10) or \
                    eng.finished():
                raise AssertionError("run %d: SIGHUP did not reload (exit %s)\n%s"
                                     % (n, eng.rc, eng.out[-3000:]))
            stop_signal = signal.SIGTERM
        if stop_signal is None:
            eng.ctrl_c()
        else:
            os.kill(eng.pid, stop_signal)
        rc = eng.wait(120)
        eng.pump(0.5)
        out = eng.out
        frames, records, nrows, acked = console_acked(out)
        nmtest.log("run %d: %d frames, %d records, %d rows (topic %d) -> %d packets, %d bytes "
                   "(want %d, %d); exit %s" % (n, frames, records, nrows, len(rows), got_pkts,
                                               got_bytes, want_pkts, want_bytes, rc))
        problems = []
        for bad in ("Mock cluster failed", "Interrupted system call"):
            if bad in out:
                problems.append("output has %r" % bad)
        if frames < REPLAYS * truth["datagrams"] + NOISE_FRAMES:
            problems.append("engine saw %d frames, sent at least %d" % (
                frames, REPLAYS * truth["datagrams"] + NOISE_FRAMES))
        if (got_pkts, got_bytes) != (want_pkts, want_bytes):
            problems.append("topic holds %d packets %d bytes, truth x%d is %d / %d" % (
                got_pkts, got_bytes, REPLAYS, want_pkts, want_bytes))
        summ = re.search(r"kafka records\s+(\d+) acked, (\d+) failed, (\d+) unacked", out)
        lost = re.search(r"records lost\s+(\d+)", out)
        rows_line = re.search(r"rows \(FlowMessages\)\s+(\d+)", out)
        if not (summ and lost and rows_line):
            problems.append("no summary")
        else:
            a, f, u = (int(x) for x in summ.groups())
            if int(lost.group(1)) != 0 or f != 0 or u != 0 or a != int(rows_line.group(1)):
                problems.append("summary: acked %d failed %d unacked %d rows %s lost %s" % (
                    a, f, u, rows_line.group(1), lost.group(1)))
            if a != len(rows):
                problems.append("summary says %d acked, the topic holds %d rows" % (a, len(rows)))
        if re.search(r"records were not delivered", out):
            problems.append("stderr says records were not delivered")
        if rc != 0:
            problems.append("exit status %s after %s" % (
                rc, "Ctrl-C" if stop_signal is None else signal.Signals(stop_signal).name))
        if problems:
            raise AssertionError("run %d: %s\n--- output tail ---\n%s" % (
                n, "; ".join(problems), out[-4000:]))
    finally:
        eng.kill()
        nmtest.remove_runtime_dir(["--file-prefix=" + prefix])


def sigpipe_check(truth):
    """The console's reader goes away (`netmeta ... | head -1`): SIGPIPE is ignored, the engine
    finishes its offline run and delivers everything."""
    with nmtest.MockBroker() as broker:
        prefix = "nmtty%d_pipe" % os.getpid()
        summary = os.path.join(tempfile.mkdtemp(prefix="nmtty-"), "s.json")
        argv = [nmtest.ENGINE, "--pcap", truth["path"], "--set", "kafka.brokers=" + broker.bootstrap,
                "--set", "engine.stats_interval_ms=10", "--summary-json", summary, "--",
                "--no-huge", "-m", "512", "--file-prefix=" + prefix]
        r, w = os.pipe()
        eng = subprocess.Popen(argv, stdout=w, stderr=subprocess.DEVNULL)
        os.close(w)
        os.read(r, 64)
        os.close(r)   # the reader is gone; the engine's next console line meets EPIPE
        rc = eng.wait(120)
        nmtest.remove_runtime_dir(argv)
        import json
        s = json.load(open(summary)) if os.path.exists(summary) else {}
        nmtest.log("stdout closed early: exit %d, %s records, %s lost" % (
            rc, s.get("records"), s.get("lost_records")))
        if rc != 0 or s.get("records") != truth["records"] or s.get("lost_records") != 0:
            raise AssertionError("with its stdout reader gone the engine exited %d (%r)" % (rc, s))


def main():
    nmtest.exit_on_signals()
    if os.geteuid() != 0:
        nmtest.skip("needs root (net_tap)")
    nmtest.require_corpora()
    nmtest.require_programs(nmtest.ENGINE, "kcat", "softflowd")
    truth = next((t for t in nmtest.truth_rows("ipfix")
                  if t["file"] == "generated/softflowd-v10.pcap"), None)
    mixed = os.path.join(nmtest.CORPORA, "generated", "inputs", "mixed.pcap")
    if truth is None or not os.path.isfile(mixed):
        nmtest.skip("corpus lacks generated/softflowd-v10.pcap truth or inputs/mixed.pcap")
    if os.path.exists("/sys/class/net/" + IFACE):
        raise SystemExit("interface %s exists already: is an engine running on netmeta.ini?" % IFACE)
    tmp = tempfile.mkdtemp(prefix="nmtty-")
    t0 = time.time()
    for n in range(1, RUNS + 1):
        # The last run gets SIGHUP (a reload of the unchanged file: it keeps running), then
        # SIGTERM, which drains like Ctrl-C.
        one_run(n, truth, mixed, tmp, signal.SIGHUP if n == RUNS and RUNS > 1 else None)
    sigpipe_check(truth)
    nmtest.log("%d runs in a pty, %d softflowd exports and %d other frames each: all exact "
               "(%.0f s)" % (RUNS, REPLAYS, NOISE_FRAMES, time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
