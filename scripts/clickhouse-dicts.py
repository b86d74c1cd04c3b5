#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""ClickHouse dictionaries from netmeta.ini's [exporter.NAME] sections (Python 3 stdlib only).

    [exporter.NAME]
    address = 192.0.2.1            ; IPv4 or IPv6 (required)
    sampling_rate = 1000           ; optional override (1:N)
    description = text             ; optional
    interface.<ifIndex> = name     ; optional, any number
    outward_interfaces = 17, 18    ; optional direction rule: ifIndexes facing outside

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

  lookup.sql             NetMeta's lookup layer for current ClickHouse (see --lookup): every
                         statement, each followed by a line holding only ';'

--lookup: print lookup.sql to stdout instead of writing files. It holds, self-contained (the
data as INSERTs into tables of database netmeta_lookup, so any server or chDB can run it and
an operator can version it): the dictionaries NetMeta's dashboards call, SamplerConfig
(Device -> SamplingRate, Description, AnonymizeAddresses), InterfaceNames, VlanNames, HostNames,
IPProtocols, EtherTypes, TCPFlags, autnums, plus Exporters (ours); and the SQL functions
IPv6ToString, SamplerToString, InterfaceToString, VLANToString, HostToString, ASNToString,
toIPv6Net, isIncomingFlow. --autnums/--vlan-names/--host-names FILE: TSV files the operator
provides (asnum, name, country / exporter address, VLAN id, name / exporter address, host
address, name); autnums defaults to proto/clickhouse/lookup/autnums.tsv (a small example).
--direction VARIANT: print the FlowDirection expression the flows_raw view uses for VARIANT
(json or protobuf): outward_interfaces rules turn into 0 (in) / 1 (out) per exporter.

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
KEYS = ("address", "sampling_rate", "description", "outward_interfaces")
MAX_OUTWARD = 64           # outward_interfaces per exporter (lib/config NM_CFG_MAX_OUTWARD)
LOOKUP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proto",
                          "clickhouse", "lookup")
LOOKUP_DB = "netmeta_lookup"
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
             "description": "", "interfaces": {}, "outward": []}
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
            elif key == "outward_interfaces":
                items = [x.strip() for x in val.split(",")]
                if (not 1 <= len(items) <= MAX_OUTWARD or not all(x.isdigit() for x in items)
                        or any(int(x) > IFINDEX_MAX for x in items)
                        or len(set(int(x) for x in items)) != len(items)):
                    raise ConfigError("%s outward_interfaces = %r: allowed: 1 to %d distinct "
                                      "ifIndexes (0..%d) separated by commas"
                                      % (where, val, MAX_OUTWARD, IFINDEX_MAX))
                e["outward"] = [int(x) for x in items]
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


# ------------------------------------------------------------------------------------------
# NetMeta's lookup layer for current ClickHouse: tables with the data, dictionaries reading
# them (SOURCE CLICKHOUSE: no files on the server's disk), SQL functions with NetMeta's names.

def read_tsv(path, ncols, what):
    """Rows of a TSV file (ClickHouse's escaping), each with exactly ncols columns."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for no, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if not line.strip() or line.startswith("#"):
                    continue
                cols = [tsv_unescape(c) for c in line.split("\t")]
                if len(cols) != ncols:
                    raise ConfigError("%s:%d: %s: %d columns, want %d" % (path, no, what,
                                                                         len(cols), ncols))
                rows.append(cols)
    except OSError as e:
        raise ConfigError("%s: cannot read: %s" % (path, e))
    return rows


def tsv_unescape(v):
    out, i = [], 0
    while i < len(v):
        if v[i] == "\\" and i + 1 < len(v):
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(v[i + 1], v[i + 1]))
            i += 2
        else:
            out.append(v[i])
            i += 1
    return "".join(out)


def _int_col(v, path, what, hi):
    if not v.isdigit() or int(v) > hi:
        raise ConfigError("%s: %s %r: want an integer 0..%d" % (path, what, v, hi))
    return int(v)


def lookup_data(exporters, autnums=None, vlan_names=None, host_names=None):
    """-> {table: (columns [(name, type)], rows [tuple])} for every lookup table."""
    def static(name, ncols):
        return read_tsv(os.path.join(LOOKUP_DIR, name + ".tsv"), ncols, name)

    def dev(text, path):
        try:
            return device_key(text)
        except ValueError as e:
            raise ConfigError("%s: %r: not an IPv4 or IPv6 address (%s)" % (path, text, e))

    d = {}
    d["SamplerConfig"] = (
        [("Device", "String"), ("SamplingRate", "Nullable(UInt64)"),
         ("Description", "Nullable(String)"), ("AnonymizeAddresses", "Bool")],
        # NetMeta: Description NULL when none, SamplerToString then shows the address; the
        # section NAME is a name the operator chose, so it stands in for a missing description
        [(e["device"], e["sampling_rate"] or None, e["description"] or e["name"], False)
         for e in exporters])
    d["Exporters"] = (
        [("Device", "String"), ("Name", "String"), ("Description", "String"),
         ("SamplingRate", "UInt64")],
        [(e["device"], e["name"], e["description"], e["sampling_rate"]) for e in exporters])
    d["InterfaceNames"] = (
        [("Device", "String"), ("Index", "UInt32"), ("Description", "String")],
        [(e["device"], i, e["interfaces"][i]) for e in exporters for i in sorted(e["interfaces"])])
    d["OutwardInterfaces"] = (
        [("Device", "String"), ("Index", "UInt32")],
        [(e["device"], i) for e in exporters for i in e["outward"]])
    rows = []
    if vlan_names:
        for a, v, n in read_tsv(vlan_names, 3, "VlanNames"):
            rows.append((dev(a, vlan_names), _int_col(v, vlan_names, "VLAN", 4095), n))
    d["VlanNames"] = ([("Device", "String"), ("Index", "UInt32"), ("Description", "String")], rows)
    rows = []
    if host_names:
        for a, h, n in read_tsv(host_names, 3, "HostNames"):
            rows.append((dev(a, host_names), dev(h, host_names), n))
    d["HostNames"] = ([("Sampler", "String"), ("Device", "String"), ("Description", "String")], rows)
    for name, hi in (("IPProtocols", 255), ("EtherTypes", 65535), ("TCPFlags", 255)):
        d[name] = ([("ID", "UInt64"), ("Name", "String")],
                   [(_int_col(i, name, "ID", hi), n) for i, n in static(name, 2)])
    path = autnums or os.path.join(LOOKUP_DIR, "autnums.tsv")
    d["autnums"] = ([("asnum", "UInt64"), ("name", "String"), ("country", "String")],
                    [(_int_col(a, path, "AS number", IFINDEX_MAX), n, c)
                     for a, n, c in read_tsv(path, 3, "autnums")])
    return d


def sql_value(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return sql_string(v)


# dictionary name -> (table, key columns, layout, attribute defaults)
LOOKUP_DICTS = [
    ("SamplerConfig", ["Device"], "COMPLEX_KEY_HASHED()"),
    ("Exporters", ["Device"], "COMPLEX_KEY_HASHED()"),
    ("InterfaceNames", ["Device", "Index"], "COMPLEX_KEY_HASHED()"),
    ("OutwardInterfaces", ["Device", "Index"], "COMPLEX_KEY_HASHED()"),
    ("VlanNames", ["Device", "Index"], "COMPLEX_KEY_HASHED()"),
    ("HostNames", ["Sampler", "Device"], "COMPLEX_KEY_HASHED()"),
    ("IPProtocols", ["ID"], "FLAT()"),
    ("EtherTypes", ["ID"], "FLAT()"),
    ("TCPFlags", ["ID"], "FLAT()"),
    ("autnums", ["asnum"], "HASHED()"),   # AS numbers reach 2^32: too sparse for FLAT
]

# NetMeta's SQL functions (names, arguments and meaning from its deploy/single-node/schema
# functions.cue; the SQL is ours). Addresses are IPv6 (or FixedString(16)) columns.
LOOKUP_FUNCTIONS = [
    # ::ffff:a.b.c.d -> a.b.c.d, everything else as IPv6NumToString
    ("IPv6ToString", "(Address) -> replaceRegexpOne(IPv6NumToString(Address), "
     "'^::ffff:([0-9]+[.][0-9]+[.][0-9]+[.][0-9]+)$', '\\\\1')"),
    # the exporter's description (netmeta.ini), else its address
    ("SamplerToString", "(Sampler) -> coalesce(dictGetOrNull('SamplerConfig', 'Description', "
     "tuple(IPv6NumToString(Sampler))), IPv6ToString(Sampler))"),
    # "<exporter> - <ifIndex>", with " [<name>]" when netmeta.ini names the interface
    ("InterfaceToString", "(Sampler, Interface) -> concat(SamplerToString(Sampler), ' - ', "
     "toString(Interface), if(dictHas('InterfaceNames', tuple(IPv6NumToString(Sampler), "
     "toUInt32(Interface))), concat(' [', dictGetString('InterfaceNames', 'Description', "
     "tuple(IPv6NumToString(Sampler), toUInt32(Interface))), ']'), ''))"),
    ("VLANToString", "(Sampler, VLAN) -> dictGetStringOrDefault('VlanNames', 'Description', "
     "tuple(IPv6NumToString(Sampler), toUInt32(VLAN)), toString(VLAN))"),
    ("HostToString", "(Sampler, Host) -> dictGetStringOrDefault('HostNames', 'Description', "
     "tuple(IPv6NumToString(Sampler), IPv6NumToString(Host)), IPv6ToString(Host))"),
    # "<name, at most 25 characters> AS<n>", or "AS<n>" for an AS autnums does not know
    ("ASNToString", "(ASN) -> if(dictGetString('autnums', 'name', toUInt64(ASN)) = '', "
     "concat('AS', toString(ASN)), concat(substring(dictGetString('autnums', 'name', "
     "toUInt64(ASN)), 1, 25), ' AS', toString(ASN)))"),
    # an IPv4 CIDR as its IPv4-mapped IPv6 CIDR (a.b.c.d/n -> ::ffff:a.b.c.d/(n+96)), for
    # isIPAddressInRange on the address columns; IPv6 unchanged
    ("toIPv6Net", "(Net) -> if(isIPv4String(splitByChar('/', Net)[1]), concat('::ffff:', "
     "splitByChar('/', Net)[1], '/', toString(if(length(splitByChar('/', Net)) = 1, 32, "
     "toUInt8OrZero(splitByChar('/', Net)[2])) + 96)), Net)"),
    # NetMeta's signature. The outward_interfaces rules of netmeta.ini are applied when rows
    # are stored (the view sets FlowDirection: 0 entered through an outward interface, else 1),
    # because a SQL function may only use its arguments and NetMeta's has no interface;
    # for other exporters FlowDirection 0 (ingress) is incoming, NetMeta's fallback.
    ("isIncomingFlow", "(SamplerAddress, SrcAddr, DstAddr, SrcAS, DstAS, FlowDirection) -> "
     "FlowDirection = 0"),
]


def render_lookup(data):
    """-> list of SQL statements (no trailing ';')."""
    src_auth = ""
    if os.environ.get("NM_CH_DICT_USER"):
        src_auth += " USER %s" % sql_string(os.environ["NM_CH_DICT_USER"])
    if os.environ.get("NM_CH_DICT_PASSWORD"):
        src_auth += " PASSWORD %s" % sql_string(os.environ["NM_CH_DICT_PASSWORD"])
    out = ["CREATE DATABASE IF NOT EXISTS %s" % LOOKUP_DB]
    for name, keys, layout in LOOKUP_DICTS:
        cols, rows = data[name]
        table = "%s.%s" % (LOOKUP_DB, name)
        # backquoted: "Index" (NetMeta's key name) is a keyword in a column list
        coldefs = ",\n".join("    `%s` %s" % c for c in cols)
        keylist = ", ".join("`%s`" % k for k in keys)
        # The dictionary depends on the table: it cannot be dropped while the dictionary exists
        # (HAVE_DEPENDENT_OBJECTS on 26.5), so a re-run empties it and fills it again; the
        # dictionary keeps serving its old data until it is reloaded below.
        out.append("CREATE TABLE IF NOT EXISTS %s\n(\n%s\n)\nENGINE = MergeTree\nORDER BY (%s)"
                   % (table, coldefs, keylist))
        out.append("TRUNCATE TABLE %s" % table)
        if rows:
            out.append("INSERT INTO %s (%s) VALUES\n%s" % (
                table, ", ".join("`%s`" % c for c, _ in cols),
                ",\n".join("(%s)" % ", ".join(sql_value(v) for v in r) for r in rows)))
        out.append("CREATE OR REPLACE DICTIONARY %s\n(\n%s\n)\nPRIMARY KEY %s\n"
                   "SOURCE(CLICKHOUSE(DB '%s' TABLE '%s'%s))\nLIFETIME(MIN 0 MAX 0)\n"
                   "LAYOUT(%s)" % (name, coldefs, keylist, LOOKUP_DB, name, src_auth,
                                   layout))
    # Current releases load dictionaries lazily, and SYSTEM RELOAD DICTIONARIES leaves
    # never-loaded ones alone (checked on 26.5): load each by name, so that a table the source
    # cannot read (user, password) fails here and not in a dashboard.
    for name, _, _ in LOOKUP_DICTS:
        out.append("SYSTEM RELOAD DICTIONARY %s" % name)
    for name, body in LOOKUP_FUNCTIONS:
        out.append("CREATE OR REPLACE FUNCTION %s AS %s" % (name, body))
    # as NetMeta's schema: a database that shows dictionaries as tables
    out.append("CREATE DATABASE IF NOT EXISTS dictionaries ENGINE = Dictionary")
    return out


def render_script(statements, header):
    """Statements, each followed by a line holding only ';' (clickhouse-client --multiquery
    and chDB's split alike)."""
    return "".join("%s\n" % h for h in header) + "".join("%s\n;\n" % s for s in statements)


def direction_expr(exporters, variant):
    """The FlowDirection the flows_raw view stores: with outward_interfaces rules, 0 when the
    row entered through an outward interface of its exporter, else 1; otherwise as sent."""
    rules = [e for e in exporters if e["outward"]]
    if not rules:
        return "FlowDirection"
    conds = []
    for e in rules:
        if variant == "json":   # the Kafka table holds the address as text
            c = "IPv6StringToNum(SamplerAddress) = IPv6StringToNum(%s)" % sql_string(e["device"])
        else:
            c = "SamplerAddress = toIPv6(%s)" % sql_string(e["device"])
        conds.append("%s, if(InIf IN (%s), 0, 1)" % (c, ", ".join(str(i) for i in e["outward"])))
    return "multiIf(%s, FlowDirection)" % ", ".join(conds)


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
    ap.add_argument("--lookup", action="store_true", help="print lookup.sql (NetMeta's "
                    "dictionaries and functions, data inline) to stdout, write nothing")
    ap.add_argument("--direction", metavar="VARIANT", choices=("json", "protobuf"),
                    help="print the view's FlowDirection expression for VARIANT and exit")
    ap.add_argument("--autnums", help="TSV: asnum, name, country (default: a small example)")
    ap.add_argument("--vlan-names", help="TSV: exporter address, VLAN id, name")
    ap.add_argument("--host-names", help="TSV: exporter address, host address, name")
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
        if a.direction:
            print(direction_expr(exporters, a.direction))
            return 0
        lookup = render_script(render_lookup(lookup_data(
            exporters, a.autnums, a.vlan_names, a.host_names)), [
                "-- NetMeta's lookup layer, generated by scripts/clickhouse-dicts.py from %s;"
                % os.path.basename(a.config),
                "-- current ClickHouse (dictionaries from tables of %s, SQL functions)."
                % LOOKUP_DB])
    except ConfigError as e:
        print("clickhouse-dicts: %s" % e, file=sys.stderr)
        return 2
    if a.lookup:
        sys.stdout.write(lookup)
        return 0
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    data_path = a.data_path or out
    files = render(exporters, data_path, a.ddl_path or data_path)
    files["lookup.sql"] = lookup
    for name in ("InterfaceNames.tsv", "Exporters.tsv", "netmeta_dictionary.xml", "dictionaries.sql",
                 "lookup.sql"):
        write_atomic(os.path.join(out, name), files[name])
    print("clickhouse-dicts: %d exporters, %d interface names -> %s" % (
        len(exporters), sum(len(e["interfaces"]) for e in exporters), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
