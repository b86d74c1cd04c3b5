#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""ClickHouse dictionaries from netmeta.ini's [exporter.NAME] sections (Python 3 stdlib only).

    [exporter.NAME]
    address = 192.0.2.1            ; IPv4 or IPv6 (required)
    sampling_rate = 1000           ; optional override (1:N)
    description = text             ; optional
    interface.<ifIndex> = name     ; optional, any number

Every other section of the file is ignored (the engine checks those). Values are read as the
engine's ini parser (iniparser) reads them: an unquoted value ends at the first ';' or '#', a
value in "double" or 'single' quotes is taken as written; NAME is folded to lower case. The
engine's limits apply (NAME 1-63 of [A-Za-z0-9_-], sampling_rate 1..2^32, description up to 255
bytes, interface names 1-63 bytes, 256 exporters, 4096 interface names).

Written into OUT (default: the current directory):

  InterfaceNames.tsv     Device, Index, Description        - NetMeta's interfaceMap
  Exporters.tsv          Device, Name, Description, SamplingRate (0 = no override)
  netmeta_dictionary.xml both dictionaries for a server's <dictionaries_config> (ClickHouse
                         18.16 and later; Debian's config.xml reads /etc/clickhouse-server/
                         *_dictionary.xml), file source, complex_key_hashed layout
  dictionaries.sql       CREATE OR REPLACE DICTIONARY for current ClickHouse (file source:
                         the .tsv files must lie under the server's user_files_path)

Device, the key, is the exporter address as ClickHouse's IPv6NumToString() prints the
FixedString(16)/IPv6 SamplerAddress column of flows_raw (IPv4 as ::ffff:a.b.c.d), as in
NetMeta's InterfaceNames/SamplerConfig dictionaries, so a query says

    dictGetString('InterfaceNames', 'Description', tuple(IPv6NumToString(SamplerAddress), InIf))
    dictGetString('Exporters', 'Name', tuple(IPv6NumToString(SamplerAddress)))

--data-path PATH: where the server finds the .tsv files (put into the XML; default OUT as an
absolute path). --ddl-path PATH: the same for dictionaries.sql (default: --data-path).
--key ADDRESS: print the Device key of one address and exit.

Exit status: 0 written, 2 bad usage or a bad [exporter.*] section (file, section, key, value
and what is allowed are printed).
"""
import argparse
import configparser
import ipaddress
import os
import re
import sys
import tempfile

SECTION_PREFIX = "exporter."
KEYS = ("address", "sampling_rate", "description")
IFINDEX_MAX = (1 << 32) - 1
# The engine's limits (lib/config, struct nm_exporter_cfg), so that both accept the same file:
RATE_MAX = 1 << 32
NAME_MAX = 63              # exporter name: letters, digits, '-' and '_'
DESCRIPTION_MAX = 255      # bytes
IFNAME_MAX = 63            # bytes
MAX_EXPORTERS = 256
MAX_IFNAMES = 4096         # interface names in all

DICT_LIFETIME = (30, 60)   # seconds: ClickHouse re-reads a changed file within this window


class ConfigError(Exception):
    pass


def ch_ipv6_text(packed):
    """16 bytes -> text exactly as ClickHouse's IPv6NumToString formats them (formatIPv6:
    lower-case hex, the first longest run of >= 2 zero words as '::', and the last 4 bytes as
    a dotted quad when the first 5 words are zero and the 6th is 0 or ffff)."""
    assert len(packed) == 16
    words = [packed[i] << 8 | packed[i + 1] for i in range(0, 16, 2)]
    best_base, best_len, cur_base, cur_len = -1, 0, -1, 0
    for i, w in enumerate(words):
        if w == 0:
            if cur_base == -1:
                cur_base, cur_len = i, 1
            else:
                cur_len += 1
        elif cur_base != -1:
            if best_base == -1 or cur_len > best_len:
                best_base, best_len = cur_base, cur_len
            cur_base = -1
    if cur_base != -1 and (best_base == -1 or cur_len > best_len):
        best_base, best_len = cur_base, cur_len
    if best_base != -1 and best_len < 2:
        best_base = -1
    out = []
    for i, w in enumerate(words):
        if best_base != -1 and best_base <= i < best_base + best_len:
            if i == best_base:
                out.append(":")
            continue
        if i != 0:
            out.append(":")
        if i == 6 and best_base == 0 and (best_len == 6 or (best_len == 5 and words[5] == 0xFFFF)):
            out.append("%d.%d.%d.%d" % tuple(packed[12:16]))
            break
        out.append("%x" % w)
    if best_base != -1 and best_base + best_len == 8:
        out.append(":")
    return "".join(out)


def device_key(text):
    """An exporter address (IPv4 or IPv6 text) -> the dictionaries' Device key."""
    t = text.strip()
    if t.startswith("[") and t.endswith("]"):
        t = t[1:-1]
    if "%" in t:
        raise ValueError("zone index (%...) not allowed")
    a = ipaddress.ip_address(t)
    if a.version == 4:
        packed = b"\x00" * 10 + b"\xff\xff" + a.packed   # as the engine sends IPv4: ::ffff:a.b.c.d
    else:
        packed = a.packed
    return ch_ipv6_text(packed)


def ini_value(raw):
    """A raw configparser value -> the value as iniparser reads it."""
    v = raw.strip()
    if len(v) >= 2 and v[0] in "\"'":
        end = v.find(v[0], 1)
        if end > 0:
            return v[1:end]
    for c in ";#":
        i = v.find(c)
        if i >= 0:
            v = v[:i]
    return v.strip()


def tsv_escape(s):
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sql_string(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def read_exporters(path):
    """-> list of dicts: name, address (as written), device, sampling_rate (0 = none),
    description, interfaces {ifIndex: name}."""
    cp = configparser.ConfigParser(interpolation=None, strict=True, empty_lines_in_values=False,
                                   delimiters=("=",),
                                   comment_prefixes=(";", "#"), inline_comment_prefixes=None,
                                   default_section="\x00no default section")
    try:
        with open(path, encoding="utf-8") as f:
            cp.read_file(f, source=path)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("%s: cannot read: %s" % (path, e))
    except configparser.Error as e:
        raise ConfigError("%s: %s" % (path, str(e).replace("\n", " ")))

    exporters, by_device, n_ifnames = [], {}, 0
    for sec in cp.sections():
        if not sec.lower().startswith(SECTION_PREFIX):
            continue
        # iniparser, the engine's reader, folds section names to lower case
        name = sec[len(SECTION_PREFIX):].lower()
        where = "%s: [%s]" % (path, sec)
        if not re.fullmatch(r"[a-z0-9_-]{1,%d}" % NAME_MAX, name):
            raise ConfigError("%s: exporter name: allowed: 1 to %d letters, digits, '-' and '_'"
                              % (where, NAME_MAX))
        if any(x["name"] == name for x in exporters):
            raise ConfigError("%s: exporter %s given twice (names are folded to lower case)"
                              % (where, name))
        if len(exporters) == MAX_EXPORTERS:
            raise ConfigError("%s: more than %d exporters" % (where, MAX_EXPORTERS))
        e = {"name": name, "address": None, "device": None, "sampling_rate": 0,
             "description": "", "interfaces": {}}
        for key, raw in cp.items(sec):
            val = ini_value(raw)
            if key == "address":
                try:
                    e["device"] = device_key(val)
                except ValueError as err:
                    raise ConfigError("%s address = %r: not an IPv4 or IPv6 address (%s)"
                                      % (where, val, err))
                e["address"] = val
            elif key == "sampling_rate":
                if not val.isdigit() or not 1 <= int(val) <= RATE_MAX:
                    raise ConfigError("%s sampling_rate = %r: allowed: an integer 1..%d (1:N)"
                                      % (where, val, RATE_MAX))
                e["sampling_rate"] = int(val)
            elif key == "description":
                if len(val.encode()) > DESCRIPTION_MAX:
                    raise ConfigError("%s description: longer than %d bytes" % (where, DESCRIPTION_MAX))
                e["description"] = val
            elif key.startswith("interface."):
                idx = key[len("interface."):]
                if not idx.isdigit() or int(idx) > IFINDEX_MAX:
                    raise ConfigError("%s %s: allowed: interface.<ifIndex>, ifIndex an integer "
                                      "0..%d" % (where, key, IFINDEX_MAX))
                if not 1 <= len(val.encode()) <= IFNAME_MAX:
                    raise ConfigError("%s %s = %r: allowed: an interface name of 1 to %d bytes"
                                      % (where, key, val, IFNAME_MAX))
                n_ifnames += 1
                if n_ifnames > MAX_IFNAMES:
                    raise ConfigError("%s %s: more than %d interface names in all"
                                      % (where, key, MAX_IFNAMES))
                if int(idx) in e["interfaces"]:
                    raise ConfigError("%s %s: ifIndex %d given twice" % (where, key, int(idx)))
                e["interfaces"][int(idx)] = val
            else:
                raise ConfigError("%s: unknown key %r; allowed: %s, interface.<ifIndex>"
                                  % (where, key, ", ".join(KEYS)))
        if e["device"] is None:
            raise ConfigError("%s: address is required (IPv4 or IPv6)" % where)
        if e["device"] in by_device:
            raise ConfigError("%s address = %s: same exporter as [%s%s]" % (
                where, e["address"], SECTION_PREFIX, by_device[e["device"]]))
        by_device[e["device"]] = name
        exporters.append(e)
    return exporters


def render(exporters, data_path, ddl_path):
    """-> {file name: text}"""
    files = {}
    rows = []
    for e in exporters:
        for idx in sorted(e["interfaces"]):
            rows.append("%s\t%d\t%s\n" % (e["device"], idx, tsv_escape(e["interfaces"][idx])))
    files["InterfaceNames.tsv"] = "".join(rows)
    files["Exporters.tsv"] = "".join("%s\t%s\t%s\t%d\n" % (
        e["device"], tsv_escape(e["name"]), tsv_escape(e["description"]), e["sampling_rate"])
        for e in exporters)

    # (name, keys [(name, type)], attributes [(name, type, null_value)])
    dicts = [
        ("InterfaceNames", [("Device", "String"), ("Index", "UInt32")],
         [("Description", "String", "")]),
        ("Exporters", [("Device", "String")],
         [("Name", "String", ""), ("Description", "String", ""), ("SamplingRate", "UInt64", "0")]),
    ]
    x = ['<?xml version="1.0"?>',
         "<!-- Generated by scripts/clickhouse-dicts.py from netmeta.ini's [exporter.*] sections;",
         "     do not edit, re-run the script. Keys: Device = IPv6NumToString(SamplerAddress). -->",
         "<yandex>"]
    s = ["-- Generated by scripts/clickhouse-dicts.py from netmeta.ini's [exporter.*] sections.",
         "-- Current ClickHouse (CREATE DICTIONARY); the .tsv files must be under the server's",
         "-- user_files_path. Keys: Device = IPv6NumToString(SamplerAddress)."]
    for name, keys, attrs in dicts:
        path = os.path.join(data_path, name + ".tsv")
        x += ["    <dictionary>",
              "        <name>%s</name>" % name,
              "        <source>",
              "            <file>",
              "                <path>%s</path>" % xml_escape(path),
              "                <format>TabSeparated</format>",
              "            </file>",
              "        </source>",
              "        <lifetime><min>%d</min><max>%d</max></lifetime>" % DICT_LIFETIME,
              "        <layout><complex_key_hashed/></layout>",
              "        <structure>",
              "            <key>"]
        for k, t in keys:
            x += ["                <attribute><name>%s</name><type>%s</type></attribute>" % (k, t)]
        x += ["            </key>"]
        for a, t, nv in attrs:
            x += ["            <attribute><name>%s</name><type>%s</type><null_value>%s</null_value>"
                  "</attribute>" % (a, t, nv)]
        x += ["        </structure>", "    </dictionary>"]

        cols = ",\n".join("    %s %s" % (k, t) for k, t in keys)
        cols += ",\n" + ",\n".join("    %s %s DEFAULT %s" % (
            a, t, sql_string(nv) if t == "String" else nv) for a, t, nv in attrs)
        s += ["", "CREATE OR REPLACE DICTIONARY %s" % name, "(", cols, ")",
              "PRIMARY KEY %s" % ", ".join(k for k, _ in keys),
              "SOURCE(FILE(path %s format 'TabSeparated'))" % sql_string(
                  os.path.join(ddl_path, name + ".tsv")),
              "LIFETIME(MIN %d MAX %d)" % DICT_LIFETIME,
              "LAYOUT(COMPLEX_KEY_HASHED());"]
    x += ["</yandex>", ""]
    files["netmeta_dictionary.xml"] = "\n".join(x)
    files["dictionaries.sql"] = "\n".join(s) + "\n"
    return files


def write_atomic(path, text):
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="ClickHouse dictionaries (InterfaceNames, Exporters) from netmeta.ini's "
                    "[exporter.NAME] sections")
    ap.add_argument("-c", "--config", default="netmeta.ini", help="the ini file (netmeta.ini)")
    ap.add_argument("-o", "--out", default=".", help="directory to write into (created)")
    ap.add_argument("--data-path", help="the .tsv directory as the server sees it (XML)")
    ap.add_argument("--ddl-path", help="the .tsv directory as the server sees it (SQL); "
                    "relative paths are relative to user_files_path")
    ap.add_argument("--key", metavar="ADDRESS", help="print the Device key of ADDRESS and exit")
    a = ap.parse_args(argv)

    if a.key is not None:
        try:
            print(device_key(a.key))
        except ValueError as e:
            print("clickhouse-dicts: %r: not an IPv4 or IPv6 address (%s)" % (a.key, e),
                  file=sys.stderr)
            return 2
        return 0
    try:
        exporters = read_exporters(a.config)
    except ConfigError as e:
        print("clickhouse-dicts: %s" % e, file=sys.stderr)
        return 2
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    data_path = a.data_path or out
    files = render(exporters, data_path, a.ddl_path or data_path)
    for name in ("InterfaceNames.tsv", "Exporters.tsv", "netmeta_dictionary.xml", "dictionaries.sql"):
        write_atomic(os.path.join(out, name), files[name])
    print("clickhouse-dicts: %d exporters, %d interface names -> %s" % (
        len(exporters), sum(len(e["interfaces"]) for e in exporters), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
