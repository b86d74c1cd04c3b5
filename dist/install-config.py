#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""The installed netmeta.ini.

    install-config.py make IN OUT SECTION.KEY=VALUE...
        Write OUT: IN (the shipped config) with these keys set for a service. Each key must be
        in IN, uncommented, in its section (every key is, with its default): its line is
        replaced and a comment above it says so. A key not found stops the build, so the
        installed config cannot silently drift from what dist/meson.build asks for.
    install-config.py install FILE DIR
        meson's install script: copy FILE to $DESTDIR/DIR/netmeta.ini, or, when that exists (the
        operator's config), to netmeta.ini.new beside it and say so. Never overwrites a config.
"""
import os
import re
import shutil
import sys


def install(src, confdir):
    destdir = os.environ.get("DESTDIR", "")
    d = os.path.join(destdir, confdir.lstrip("/")) if destdir else confdir
    os.makedirs(d, exist_ok=True)
    dst = os.path.join(d, "netmeta.ini")
    if os.path.exists(dst):
        dst += ".new"
        print("Keeping %s/netmeta.ini (yours); the shipped one is %s" % (d, dst))
    else:
        print("Installing %s" % dst)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)


def make(src, dst, sets):
    want = {}
    for s in sets:
        m = re.fullmatch(r"([a-z0-9_.]+)\.([a-z0-9_]+)=(.*)", s)
        if not m:
            sys.exit("install-config.py: %s: expected SECTION.KEY=VALUE" % s)
        want[(m.group(1), m.group(2))] = m.group(3)
    out, section, done = [], None, set()
    with open(src) as f:
        for line in f:
            m = re.match(r"\s*\[([^\]]+)\]", line)
            if m:
                section = m.group(1).strip().lower()
            m = re.match(r"([A-Za-z0-9_.]+)\s*=", line)
            if m and (section, m.group(1).lower()) in want:
                key = (section, m.group(1).lower())
                out.append("; installed for the systemd service (was: %s)\n" % line.strip())
                out.append("%s = %s\n" % (m.group(1), want[key]))
                done.add(key)
                continue
            out.append(line)
    missing = [".".join(k) for k in want if k not in done]
    if missing:
        sys.exit("install-config.py: %s: no such key in %s" % (", ".join(missing), src))
    with open(dst, "w") as f:
        f.writelines(out)


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) == 4 and sys.argv[1] == "install":
        install(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


main()
