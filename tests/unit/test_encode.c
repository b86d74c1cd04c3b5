/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * FlowMessage encoders: protobuf checked against protobuf-c's generated unpacker and against
 * `protoc --decode` (an independent oracle), JSON against exact text and a small parser.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "agg/agg.h"
#include "encode/encode.h"
#include "flow.pb-c.h"
#include "decode_fixture.h"

static void
v4(uint8_t dst[NM_ADDR_LEN], uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	const uint8_t q[4] = {a, b, c, d};

	nm_addr_from_v4(dst, q);
}

static void
v6(uint8_t dst[NM_ADDR_LEN], const char *s)
{
	assert_int_equal(inet_pton(AF_INET6, s, dst), 1);
}

/* Every field set, each to a distinct value. */
static void
full_rec(struct nm_flow_rec *r)
{
	struct nm_flow_key *k = &r->key;

	memset(r, 0, sizeof(*r));
	k->type = NM_FLOW_NF9;
	k->time_received = 1700000000;
	k->sampling_rate = 1000;
	k->time_flow_start = 1699999990;
	k->time_flow_end = 1699999999;
	k->src_mac = 0x001122334455ull;
	k->dst_mac = 0x66778899aabbull;
	v4(k->sampler_addr, 192, 0, 2, 9);
	v6(k->src_addr, "2001:db8::1");
	v4(k->dst_addr, 198, 51, 100, 7);
	v6(k->next_hop, "fe80::1:2:3:4");
	k->sequence_num = 123456;
	k->in_if = 10;
	k->out_if = 20;
	k->src_as = 64500;
	k->dst_as = 4200000000u;
	k->next_hop_as = 64501;
	k->src_vlan = 100;
	k->dst_vlan = 200;
	k->vlan_id = 300;
	k->ingress_vrf_id = 7;
	k->egress_vrf_id = 8;
	k->ipv6_flow_label = 0xfffff;
	k->fragment_id = 54321;
	k->fragment_offset = 1480;
	k->observation_domain_id = 77;
	k->mpls_label[0] = 16;
	k->mpls_label[1] = 17;
	k->mpls_label[2] = 1048575;
	k->mpls_last_label = 18;
	k->etype = 0x86dd;
	k->src_port = 443;
	k->dst_port = 65535;
	k->proto = 6;
	k->ip_tos = 0xb8;
	k->ip_ttl = 64;
	k->tcp_flags = 0x1b;
	k->icmp_type = 3;
	k->icmp_code = 4;
	k->forwarding_status = 64;
	k->src_net = 24;
	k->dst_net = 48;
	k->flow_direction = 1;
	k->bi_flow_direction = 2;
	k->mpls_count = 4;
	k->mpls_ttl[0] = 255;
	k->mpls_ttl[1] = 254;
	k->mpls_ttl[2] = 253;
	k->mpls_last_ttl = 252;
	r->bytes = 1234567890123ull;
	r->packets = 98765;
}

/* Every field at its largest value: the worst case for both encoders. */
static void
max_rec(struct nm_flow_rec *r)
{
	memset(r, 0xff, sizeof(*r));
	memset(r->key.pad_, 0, sizeof(r->key.pad_));
}

static Netmeta__FlowMessage *
unpack_prefixed(const uint8_t *buf, size_t n)
{
	uint64_t len = 0;
	unsigned int shift = 0;
	size_t i = 0;

	do {
		assert_true(i < n && i < 10);
		len |= (uint64_t)(buf[i] & 0x7f) << shift;
		shift += 7;
	} while (buf[i++] & 0x80);
	assert_int_equal(len + i, n); /* the prefix says exactly how much follows */
	return netmeta__flow_message__unpack(NULL, (size_t)len, buf + i);
}

static void
assert_bytes16(const ProtobufCBinaryData *b, const uint8_t want[NM_ADDR_LEN])
{
	assert_int_equal(b->len, NM_ADDR_LEN);
	assert_memory_equal(b->data, want, NM_ADDR_LEN);
}

/* The next hop the encoders send: NetFlow's "none" (::ffff:0.0.0.0) leaves as ::. */
static const uint8_t *
sent_next_hop(const struct nm_flow_key *k)
{
	static const uint8_t zero[NM_ADDR_LEN];
	static const uint8_t v4_zero[NM_ADDR_LEN] = {[10] = 0xff, [11] = 0xff};

	return memcmp(k->next_hop, v4_zero, NM_ADDR_LEN) == 0 ? zero : k->next_hop;
}

static void
check_msg(const Netmeta__FlowMessage *m, const struct nm_flow_rec *r, uint64_t flows)
{
	const struct nm_flow_key *k = &r->key;

	assert_int_equal(m->type, k->type);
	assert_int_equal(m->timereceived, k->time_received);
	assert_int_equal(m->sequencenum, k->sequence_num);
	assert_int_equal(m->samplingrate, k->sampling_rate);
	assert_int_equal(m->flowdirection, k->flow_direction);
	assert_bytes16(&m->sampleraddress, k->sampler_addr);
	assert_int_equal(m->timeflowstart, k->time_flow_start);
	assert_int_equal(m->timeflowend, k->time_flow_end);
	assert_int_equal(m->bytes, r->bytes);
	assert_int_equal(m->packets, r->packets);
	assert_bytes16(&m->srcaddr, k->src_addr);
	assert_bytes16(&m->dstaddr, k->dst_addr);
	assert_int_equal(m->etype, k->etype);
	assert_int_equal(m->proto, k->proto);
	assert_int_equal(m->srcport, k->src_port);
	assert_int_equal(m->dstport, k->dst_port);
	assert_int_equal(m->inif, k->in_if);
	assert_int_equal(m->outif, k->out_if);
	assert_int_equal(m->srcmac, k->src_mac);
	assert_int_equal(m->dstmac, k->dst_mac);
	assert_int_equal(m->srcvlan, k->src_vlan);
	assert_int_equal(m->dstvlan, k->dst_vlan);
	assert_int_equal(m->vlanid, k->vlan_id);
	assert_int_equal(m->ingressvrfid, k->ingress_vrf_id);
	assert_int_equal(m->egressvrfid, k->egress_vrf_id);
	assert_int_equal(m->iptos, k->ip_tos);
	assert_int_equal(m->forwardingstatus, k->forwarding_status);
	assert_int_equal(m->ipttl, k->ip_ttl);
	assert_int_equal(m->tcpflags, k->tcp_flags);
	assert_int_equal(m->icmptype, k->icmp_type);
	assert_int_equal(m->icmpcode, k->icmp_code);
	assert_int_equal(m->ipv6flowlabel, k->ipv6_flow_label);
	assert_int_equal(m->fragmentid, k->fragment_id);
	assert_int_equal(m->fragmentoffset, k->fragment_offset);
	assert_int_equal(m->biflowdirection, k->bi_flow_direction);
	assert_int_equal(m->srcas, k->src_as);
	assert_int_equal(m->dstas, k->dst_as);
	assert_bytes16(&m->nexthop, sent_next_hop(k));
	assert_int_equal(m->nexthopas, k->next_hop_as);
	assert_int_equal(m->srcnet, k->src_net);
	assert_int_equal(m->dstnet, k->dst_net);
	assert_int_equal(!!m->hasmpls, k->mpls_count > 0);
	assert_int_equal(m->mplscount, k->mpls_count);
	assert_int_equal(m->mpls1ttl, k->mpls_ttl[0]);
	assert_int_equal(m->mpls1label, k->mpls_label[0]);
	assert_int_equal(m->mpls2ttl, k->mpls_ttl[1]);
	assert_int_equal(m->mpls2label, k->mpls_label[1]);
	assert_int_equal(m->mpls3ttl, k->mpls_ttl[2]);
	assert_int_equal(m->mpls3label, k->mpls_label[2]);
	assert_int_equal(m->mplslastttl, k->mpls_last_ttl);
	assert_int_equal(m->mplslastlabel, k->mpls_last_label);
	assert_int_equal(m->observationdomainid, k->observation_domain_id);
	assert_int_equal(m->flows, flows);
	/* Nothing the encoder wrote was unknown to the schema. */
	assert_int_equal(m->base.n_unknown_fields, 0);
}

static void
roundtrip_flows(const struct nm_flow_rec *r, uint64_t flows, size_t *out_len)
{
	uint8_t buf[NM_ENCODE_PB_MAX];
	Netmeta__FlowMessage *m;
	size_t n;

	n = nm_encode_pb(r, flows, buf, sizeof(buf));
	assert_true(n > 0 && n <= NM_ENCODE_PB_MAX);
	m = unpack_prefixed(buf, n);
	assert_non_null(m);
	check_msg(m, r, flows);
	netmeta__flow_message__free_unpacked(m, NULL);
	*out_len = n;
}

static void
roundtrip(const struct nm_flow_rec *r, size_t *out_len)
{
	roundtrip_flows(r, 1, out_len);
}

static void
test_pb_full(void **state)
{
	struct nm_flow_rec r;
	uint8_t buf[NM_ENCODE_PB_MAX];
	size_t n;

	(void)state;
	full_rec(&r);
	roundtrip(&r, &n);
	/* More than 127 bytes of body: a two-byte prefix. */
	assert_true(n > 130);
	assert_int_equal(nm_encode_pb(&r, 1, buf, sizeof(buf)), n);
	assert_true(buf[0] & 0x80);
	assert_int_equal((size_t)((buf[0] & 0x7f) | (buf[1] << 7)), n - 2);
}

static void
test_pb_sparse(void **state)
{
	static const uint8_t zero[NM_ADDR_LEN];
	struct nm_flow_rec r;
	uint8_t buf[NM_ENCODE_PB_MAX];
	size_t n;

	(void)state;
	memset(&r, 0, sizeof(r));
	r.key.time_received = 1700000000;
	v4(r.key.src_addr, 10, 0, 0, 1);
	r.key.src_port = 53;
	r.bytes = 100;
	roundtrip(&r, &n);
	n = nm_encode_pb(&r, 1, buf, sizeof(buf));
	/* One-byte prefix; the body is exactly the set scalars and four 16-byte addresses. */
	assert_int_equal(buf[0], n - 1);
	assert_int_equal(n - 1, (1 + 5) + (2 + 1) + (1 + 1) + 4 * (1 + 1 + 16) + (2 + 1));
	/* Flows (2000) = 1 comes last: tag 2000 << 3 = 16000 as a varint, then 1. */
	assert_memory_equal(buf + n - 3, "\x80\x7d\x01", 3);
	/* Field 6 (SrcAddr) is ::ffff:10.0.0.1, field 7 (DstAddr) is :: and still 16 bytes. */
	assert_non_null(memmem(buf, n, "\x32\x10\0\0\0\0\0\0\0\0\0\0\xff\xff\x0a\0\0\x01", 18));
	assert_non_null(memmem(buf, n, "\x3a\x10", 2));
	assert_non_null(memmem((uint8_t *)memmem(buf, n, "\x3a\x10", 2) + 2, 16, zero, 16));

	/* An all-zero record: only the four addresses and Flows. */
	memset(&r, 0, sizeof(r));
	roundtrip(&r, &n);
	assert_int_equal(n, 1 + 4 * 18 + 3);
	/* Flows 0 (never emitted by the aggregation) is the proto3 default: not sent. */
	assert_int_equal(nm_encode_pb(&r, 0, buf, sizeof(buf)), 1 + 4 * 18);
}

static void
test_pb_max(void **state)
{
	struct nm_flow_rec r;
	size_t n;

	(void)state;
	max_rec(&r);
	roundtrip(&r, &n);
	assert_true(n <= NM_ENCODE_PB_MAX);
	print_message("protobuf worst case: %zu bytes (bound %d)\n", n, NM_ENCODE_PB_MAX);
}

/* Every cap below the size fails without touching the buffer; the exact size succeeds. */
static void
test_pb_short_cap(void **state)
{
	struct nm_flow_rec recs[2];
	uint8_t want[NM_ENCODE_PB_MAX], buf[NM_ENCODE_PB_MAX + 16];
	size_t n, cap;
	int i;

	(void)state;
	full_rec(&recs[0]);
	memset(&recs[1], 0, sizeof(recs[1]));
	for (i = 0; i < 2; i++) {
		n = nm_encode_pb(&recs[i], 1, want, sizeof(want));
		for (cap = 0; cap < n; cap++) {
			memset(buf, 0xa5, sizeof(buf));
			assert_int_equal(nm_encode_pb(&recs[i], 1, buf, cap), 0);
			for (size_t j = 0; j < sizeof(buf); j++)
				assert_int_equal(buf[j], 0xa5);
		}
		for (cap = n; cap < n + 16; cap++) {
			memset(buf, 0xa5, sizeof(buf));
			assert_int_equal(nm_encode_pb(&recs[i], 1, buf, cap), n);
			assert_memory_equal(buf, want, n);
			assert_int_equal(buf[n], 0xa5);
		}
	}
}

/* protoc --decode: a decoder that shares no code with ours or with protobuf-c. */
static void
test_pb_protoc(void **state)
{
	struct nm_flow_rec r;
	uint8_t buf[NM_ENCODE_PB_MAX];
	char path[] = "/tmp/nm_test_encode_XXXXXX", cmd[1024], out[8192];
	size_t n, pfx, got = 0;
	FILE *f, *p;
	int fd;

	(void)state;
	if (system("protoc --version >/dev/null 2>&1") != 0) {
		print_message("protoc not installed: skipped\n");
		skip();
	}
	full_rec(&r);
	n = nm_encode_pb(&r, 1, buf, sizeof(buf));
	pfx = (buf[0] & 0x80) ? 2 : 1;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf + pfx, 1, n - pfx, f), n - pfx);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "protoc --decode=netmeta.FlowMessage --proto_path=%s/proto flow.proto < %s 2>&1",
		 NM_SOURCE_ROOT, path);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (got < sizeof(out) - 1) {
		size_t m = fread(out + got, 1, sizeof(out) - 1 - got, p);

		if (m == 0)
			break;
		got += m;
	}
	out[got] = '\0';
	assert_int_equal(pclose(p), 0);
	unlink(path);

	static const char *const want[] = {
		"Type: NETFLOW_V9\n",
		"TimeReceived: 1700000000\n",
		"SequenceNum: 123456\n",
		"SamplingRate: 1000\n",
		"FlowDirection: 1\n",
		"TimeFlowStart: 1699999990\n",
		"TimeFlowEnd: 1699999999\n",
		"Bytes: 1234567890123\n",
		"Packets: 98765\n",
		"Etype: 34525\n",
		"Proto: 6\n",
		"SrcPort: 443\n",
		"DstPort: 65535\n",
		"InIf: 10\n",
		"OutIf: 20\n",
		"SrcMac: 73588229205\n",
		"DstMac: 112663578913467\n",
		"SrcVlan: 100\n",
		"DstVlan: 200\n",
		"VlanId: 300\n",
		"IngressVrfID: 7\n",
		"EgressVrfID: 8\n",
		"IPTos: 184\n",
		"ForwardingStatus: 64\n",
		"IPTTL: 64\n",
		"TCPFlags: 27\n",
		"IcmpType: 3\n",
		"IcmpCode: 4\n",
		"IPv6FlowLabel: 1048575\n",
		"FragmentId: 54321\n",
		"FragmentOffset: 1480\n",
		"BiFlowDirection: 2\n",
		"SrcAS: 64500\n",
		"DstAS: 4200000000\n",
		"NextHopAS: 64501\n",
		"SrcNet: 24\n",
		"DstNet: 48\n",
		"HasMPLS: true\n",
		"MPLSCount: 4\n",
		"MPLS1TTL: 255\n",
		"MPLS1Label: 16\n",
		"MPLS2TTL: 254\n",
		"MPLS2Label: 17\n",
		"MPLS3TTL: 253\n",
		"MPLS3Label: 1048575\n",
		"MPLSLastTTL: 252\n",
		"MPLSLastLabel: 18\n",
		"ObservationDomainID: 77\n",
		"Flows: 1\n",
		/* protoc prints bytes as C-escaped strings */
		"SamplerAddress: \"\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\377\\377\\300\\000\\002\\t\"\n",
		"DstAddr: \"\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\377\\377\\3063d\\007\"\n",
		"SrcAddr: \"",
		"NextHop: \"",
	};
	unsigned int i, lines = 0;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (strstr(out, want[i]) == NULL)
			fail_msg("protoc output lacks '%s':\n%s", want[i], out);
	}
	for (i = 0; out[i] != '\0'; i++)
		lines += out[i] == '\n';
	/* One line per field, nothing unknown (protoc prints unknown fields by number). */
	assert_int_equal(lines, sizeof(want) / sizeof(want[0]));
	for (i = 0; out[i] != '\0'; i++)
		assert_false((i == 0 || out[i - 1] == '\n') && out[i] >= '0' && out[i] <= '9');
}

/* ---------------------------------------------------------------- JSON */

static const char full_json[] =
	"{\"Type\":3,\"TimeReceived\":1700000000,\"SequenceNum\":123456,\"SamplingRate\":1000,"
	"\"FlowDirection\":1,\"SamplerAddress\":\"::ffff:192.0.2.9\",\"TimeFlowStart\":1699999990,"
	"\"TimeFlowEnd\":1699999999,\"Bytes\":1234567890123,\"Packets\":98765,"
	"\"SrcAddr\":\"2001:db8::1\",\"DstAddr\":\"::ffff:198.51.100.7\",\"Etype\":34525,"
	"\"Proto\":6,\"SrcPort\":443,\"DstPort\":65535,\"InIf\":10,\"OutIf\":20,"
	"\"SrcMac\":73588229205,\"DstMac\":112663578913467,\"SrcVlan\":100,\"DstVlan\":200,"
	"\"VlanId\":300,\"IngressVrfID\":7,\"EgressVrfID\":8,\"IPTos\":184,"
	"\"ForwardingStatus\":64,\"IPTTL\":64,\"TCPFlags\":27,\"IcmpType\":3,\"IcmpCode\":4,"
	"\"IPv6FlowLabel\":1048575,\"FragmentId\":54321,\"FragmentOffset\":1480,"
	"\"BiFlowDirection\":2,\"SrcAS\":64500,\"DstAS\":4200000000,"
	"\"NextHop\":\"fe80::1:2:3:4\",\"NextHopAS\":64501,\"SrcNet\":24,\"DstNet\":48,"
	"\"HasMPLS\":1,\"MPLSCount\":4,\"MPLS1TTL\":255,\"MPLS1Label\":16,\"MPLS2TTL\":254,"
	"\"MPLS2Label\":17,\"MPLS3TTL\":253,\"MPLS3Label\":1048575,\"MPLSLastTTL\":252,"
	"\"MPLSLastLabel\":18,\"ObservationDomainID\":77,\"Flows\":1}\n";

static void
test_json_exact(void **state)
{
	struct nm_flow_rec r;
	char buf[NM_ENCODE_JSON_MAX];
	size_t n;

	(void)state;
	full_rec(&r);
	n = nm_encode_json(&r, 1, buf, sizeof(buf));
	assert_int_equal(n, sizeof(full_json) - 1);
	assert_memory_equal(buf, full_json, n);
}

/*
 * A minimal JSON object reader for one line: checks the syntax and collects key -> value text.
 * Values are unsigned integers or strings without escapes (all the encoder writes).
 */
struct kv {
	char key[32];
	char val[64];
	int is_str;
};

static int
parse_line(const char *s, size_t n, struct kv *kv, int max)
{
	const char *p = s, *end = s + n;
	int cnt = 0;

	if (n < 3 || *p++ != '{' || end[-1] != '\n' || end[-2] != '}')
		return -1;
	end -= 2;
	while (p < end) {
		const char *q;

		if (cnt == max || *p++ != '"')
			return -1;
		q = memchr(p, '"', (size_t)(end - p));
		if (q == NULL || q - p >= 32)
			return -1;
		memcpy(kv[cnt].key, p, (size_t)(q - p));
		kv[cnt].key[q - p] = '\0';
		p = q + 1;
		if (p >= end || *p++ != ':')
			return -1;
		if (*p == '"') {
			q = memchr(p + 1, '"', (size_t)(end - p - 1));
			if (q == NULL || q - p >= 64)
				return -1;
			memcpy(kv[cnt].val, p + 1, (size_t)(q - p - 1));
			kv[cnt].val[q - p - 1] = '\0';
			kv[cnt].is_str = 1;
			p = q + 1;
		} else {
			q = p;
			while (q < end && *q >= '0' && *q <= '9')
				q++;
			if (q == p || q - p > 20 || (*p == '0' && q - p > 1))
				return -1;
			memcpy(kv[cnt].val, p, (size_t)(q - p));
			kv[cnt].val[q - p] = '\0';
			kv[cnt].is_str = 0;
			p = q;
		}
		cnt++;
		if (p < end && *p++ != ',')
			return -1;
	}
	return cnt;
}

static const char *
get(const struct kv *kv, int n, const char *key, int is_str)
{
	const char *v = NULL;
	int i;

	for (i = 0; i < n; i++) {
		if (strcmp(kv[i].key, key) == 0) {
			assert_null(v); /* every key once */
			assert_int_equal(kv[i].is_str, is_str);
			v = kv[i].val;
		}
	}
	if (v == NULL)
		fail_msg("key %s missing", key);
	return v;
}

#define NUM(name, val) assert_int_equal(strtoull(get(kv, n, name, 0), NULL, 10), (uint64_t)(val))

static void
check_addr(const struct kv *kv, int n, const char *key, const uint8_t a[NM_ADDR_LEN])
{
	char want[INET6_ADDRSTRLEN];

	assert_non_null(inet_ntop(AF_INET6, a, want, sizeof(want)));
	assert_string_equal(get(kv, n, key, 1), want);
}

static void
check_json(const struct nm_flow_rec *r, uint64_t flows, const char *buf, size_t len)
{
	const struct nm_flow_key *k = &r->key;
	struct kv kv[80];
	int n = parse_line(buf, len, kv, 80);

	assert_int_equal(n, 53); /* every FlowMessage field */
	assert_null(memchr(buf, '\n', len - 1));
	NUM("Type", k->type);
	NUM("TimeReceived", k->time_received);
	NUM("SequenceNum", k->sequence_num);
	NUM("SamplingRate", k->sampling_rate);
	NUM("FlowDirection", k->flow_direction);
	check_addr(kv, n, "SamplerAddress", k->sampler_addr);
	NUM("TimeFlowStart", k->time_flow_start);
	NUM("TimeFlowEnd", k->time_flow_end);
	NUM("Bytes", r->bytes);
	NUM("Packets", r->packets);
	check_addr(kv, n, "SrcAddr", k->src_addr);
	check_addr(kv, n, "DstAddr", k->dst_addr);
	NUM("Etype", k->etype);
	NUM("Proto", k->proto);
	NUM("SrcPort", k->src_port);
	NUM("DstPort", k->dst_port);
	NUM("InIf", k->in_if);
	NUM("OutIf", k->out_if);
	NUM("SrcMac", k->src_mac);
	NUM("DstMac", k->dst_mac);
	NUM("SrcVlan", k->src_vlan);
	NUM("DstVlan", k->dst_vlan);
	NUM("VlanId", k->vlan_id);
	NUM("IngressVrfID", k->ingress_vrf_id);
	NUM("EgressVrfID", k->egress_vrf_id);
	NUM("IPTos", k->ip_tos);
	NUM("ForwardingStatus", k->forwarding_status);
	NUM("IPTTL", k->ip_ttl);
	NUM("TCPFlags", k->tcp_flags);
	NUM("IcmpType", k->icmp_type);
	NUM("IcmpCode", k->icmp_code);
	NUM("IPv6FlowLabel", k->ipv6_flow_label);
	NUM("FragmentId", k->fragment_id);
	NUM("FragmentOffset", k->fragment_offset);
	NUM("BiFlowDirection", k->bi_flow_direction);
	NUM("SrcAS", k->src_as);
	NUM("DstAS", k->dst_as);
	check_addr(kv, n, "NextHop", sent_next_hop(k));
	NUM("NextHopAS", k->next_hop_as);
	NUM("SrcNet", k->src_net);
	NUM("DstNet", k->dst_net);
	NUM("HasMPLS", k->mpls_count > 0);
	NUM("MPLSCount", k->mpls_count);
	NUM("MPLS1TTL", k->mpls_ttl[0]);
	NUM("MPLS1Label", k->mpls_label[0]);
	NUM("MPLS2TTL", k->mpls_ttl[1]);
	NUM("MPLS2Label", k->mpls_label[1]);
	NUM("MPLS3TTL", k->mpls_ttl[2]);
	NUM("MPLS3Label", k->mpls_label[2]);
	NUM("MPLSLastTTL", k->mpls_last_ttl);
	NUM("MPLSLastLabel", k->mpls_last_label);
	NUM("ObservationDomainID", k->observation_domain_id);
	NUM("Flows", flows);
}

static void
test_json_parse(void **state)
{
	struct nm_flow_rec r;
	char buf[NM_ENCODE_JSON_MAX];
	size_t n;

	(void)state;
	full_rec(&r);
	n = nm_encode_json(&r, 1, buf, sizeof(buf));
	check_json(&r, 1, buf, n);

	memset(&r, 0, sizeof(r));
	n = nm_encode_json(&r, 1, buf, sizeof(buf));
	check_json(&r, 1, buf, n);
	assert_non_null(memmem(buf, n, "\"SrcAddr\":\"::\"", 14));
	assert_non_null(memmem(buf, n, "\"HasMPLS\":0,", 12));

	max_rec(&r);
	n = nm_encode_json(&r, 1, buf, sizeof(buf));
	assert_true(n > 0 && n <= NM_ENCODE_JSON_MAX);
	check_json(&r, 1, buf, n);
	print_message("JSON worst case: %zu bytes (bound %d)\n", n, NM_ENCODE_JSON_MAX);
	assert_true(NM_ENCODE_MAX >= NM_ENCODE_JSON_MAX && NM_ENCODE_MAX >= NM_ENCODE_PB_MAX);
}

/* The encoder's own address text equals inet_ntop's for mapped, zero and random addresses. */
static void
test_json_addrs(void **state)
{
	struct nm_flow_rec r;
	char buf[NM_ENCODE_JSON_MAX];
	unsigned int i, j;
	size_t n;

	(void)state;
	srand(42);
	for (i = 0; i < 20000; i++) {
		memset(&r, 0, sizeof(r));
		for (j = 0; j < NM_ADDR_LEN; j++) {
			r.key.src_addr[j] = (uint8_t)rand();
			/* Many zero runs, to exercise :: compression. */
			r.key.dst_addr[j] = (rand() & 3) == 0 ? (uint8_t)rand() : 0;
		}
		v4(r.key.sampler_addr, (uint8_t)rand(), (uint8_t)rand(), (uint8_t)i,
		   (uint8_t)(i >> 8));
		if (i & 1)
			memcpy(r.key.next_hop + 12, r.key.src_addr, 4); /* ::a.b.c.d (compatible) */
		n = nm_encode_json(&r, 1, buf, sizeof(buf));
		check_json(&r, 1, buf, n);
	}
}

/*
 * An absent next hop is :: in both encodings (NetMeta's view stores that; its dashboards filter
 * NextHop != '::'), whether the decoder left it zero or NetFlow sent 0.0.0.0 (::ffff:0.0.0.0);
 * ::ffff:0.0.0.1 is a next hop and stays. The merged-records count travels as Flows.
 */
static void
test_next_hop_none_and_flows(void **state)
{
	static const uint8_t zero[NM_ADDR_LEN];
	struct nm_flow_rec r;
	uint8_t buf[NM_ENCODE_JSON_MAX];
	Netmeta__FlowMessage *m;
	size_t n;

	(void)state;
	full_rec(&r);
	v4(r.key.next_hop, 0, 0, 0, 0);
	n = nm_encode_pb(&r, 5, buf, sizeof(buf));
	m = unpack_prefixed(buf, n);
	assert_non_null(m);
	assert_bytes16(&m->nexthop, zero);
	assert_int_equal(m->flows, 5);
	check_msg(m, &r, 5);
	netmeta__flow_message__free_unpacked(m, NULL);
	n = nm_encode_json(&r, 5, (char *)buf, sizeof(buf));
	assert_non_null(memmem(buf, n, "\"NextHop\":\"::\",", 12));
	assert_non_null(memmem(buf, n, ",\"Flows\":5}\n", 12));
	check_json(&r, 5, (char *)buf, n);

	v4(r.key.next_hop, 0, 0, 0, 1);
	n = nm_encode_json(&r, UINT64_MAX, (char *)buf, sizeof(buf));
	assert_non_null(memmem(buf, n, "\"NextHop\":\"::ffff:0.0.0.1\",", 26));
	assert_non_null(memmem(buf, n, ",\"Flows\":18446744073709551615}\n", 31));
	roundtrip_flows(&r, UINT64_MAX, &n);
	assert_true(n <= NM_ENCODE_PB_MAX);
}

static void
test_json_short_cap(void **state)
{
	struct nm_flow_rec r;
	char want[NM_ENCODE_JSON_MAX], buf[NM_ENCODE_JSON_MAX + 8];
	size_t n, cap, j;

	(void)state;
	full_rec(&r);
	n = nm_encode_json(&r, 1, want, sizeof(want));
	for (cap = 0; cap < n; cap++) {
		memset(buf, 0x5a, sizeof(buf));
		assert_int_equal(nm_encode_json(&r, 1, buf, cap), 0);
		for (j = 0; j < sizeof(buf); j++)
			assert_int_equal(buf[j], 0x5a);
	}
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(nm_encode_json(&r, 1, buf, n), n);
	assert_memory_equal(buf, want, n);
	assert_int_equal(buf[n], 0x5a);
}

/* ---------------------------------------------- nm_encode_pb_row against nm_encode_pb */

/* xorshift64*: a fixed seed, so a failure is reproducible. */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

/* Zero half the time, else a value of 1..64 random bits: every varint length. */
static uint64_t
rnd_val(uint64_t *s, unsigned int bits)
{
	uint64_t v;
	unsigned int b;

	if (rnd(s) & 1)
		return 0;
	b = 1 + (unsigned int)(rnd(s) % bits);
	v = rnd(s);
	return b >= 64 ? v : v & ((1ull << b) - 1);
}

/* Addresses of every shape the compact key treats apart. */
static void
rnd_addr(uint64_t *s, uint8_t a[NM_ADDR_LEN])
{
	unsigned int i;

	memset(a, 0, NM_ADDR_LEN);
	switch (rnd(s) % 8) {
	case 0: /* :: */
		break;
	case 1: /* ::ffff:0.0.0.0, NetFlow's "no next hop" */
		a[10] = a[11] = 0xff;
		break;
	case 2: /* ::ffff:a.b.c.d */
	case 3:
		a[10] = a[11] = 0xff;
		for (i = 12; i < 16; i++)
			a[i] = (uint8_t)rnd(s);
		break;
	case 4: /* almost IPv4-mapped: ::fffe:a.b.c.d, 0:0:0:1:0:ffff:a.b.c.d */
		a[10] = 0xff;
		a[11] = 0xfe;
		a[15] = 1;
		break;
	case 5:
		a[7] = 1;
		a[10] = a[11] = 0xff;
		a[13] = 9;
		break;
	case 6: /* IPv6 with zero 32-bit words */
		a[0] = 0x20;
		a[1] = 0x01;
		a[15] = (uint8_t)rnd(s);
		break;
	default: /* random */
		for (i = 0; i < NM_ADDR_LEN; i++)
			a[i] = (uint8_t)rnd(s);
	}
}

static void
rnd_rec(uint64_t *s, struct nm_flow_rec *r)
{
	struct nm_flow_key *k = &r->key;
	unsigned int i;

	memset(r, 0, sizeof(*r));
	k->time_received = rnd_val(s, 64);
	k->sampling_rate = rnd_val(s, 64);
	k->time_flow_start = rnd_val(s, 64);
	k->time_flow_end = rnd_val(s, 64);
	k->src_mac = rnd_val(s, 48);
	k->dst_mac = rnd_val(s, 64);
	rnd_addr(s, k->sampler_addr);
	rnd_addr(s, k->src_addr);
	rnd_addr(s, k->dst_addr);
	rnd_addr(s, k->next_hop);
	k->sequence_num = (uint32_t)rnd_val(s, 32);
	k->in_if = (uint32_t)rnd_val(s, 32);
	k->out_if = (uint32_t)rnd_val(s, 32);
	k->src_as = (uint32_t)rnd_val(s, 32);
	k->dst_as = (uint32_t)rnd_val(s, 32);
	k->next_hop_as = (uint32_t)rnd_val(s, 32);
	k->src_vlan = (uint32_t)rnd_val(s, 12);
	k->dst_vlan = (uint32_t)rnd_val(s, 32);
	k->vlan_id = (uint32_t)rnd_val(s, 12);
	k->ingress_vrf_id = (uint32_t)rnd_val(s, 32);
	k->egress_vrf_id = (uint32_t)rnd_val(s, 32);
	k->ipv6_flow_label = (uint32_t)rnd_val(s, 20);
	k->fragment_id = (uint32_t)rnd_val(s, 32);
	k->fragment_offset = (uint32_t)rnd_val(s, 13);
	k->observation_domain_id = (uint32_t)rnd_val(s, 32);
	for (i = 0; i < 3; i++) {
		k->mpls_label[i] = (uint32_t)rnd_val(s, 20);
		k->mpls_ttl[i] = (uint8_t)rnd_val(s, 8);
	}
	k->mpls_last_label = (uint32_t)rnd_val(s, 32);
	k->mpls_last_ttl = (uint8_t)rnd_val(s, 8);
	k->mpls_count = (uint8_t)rnd_val(s, 8);
	k->etype = (uint16_t)rnd_val(s, 16);
	k->src_port = (uint16_t)rnd_val(s, 16);
	k->dst_port = (uint16_t)rnd_val(s, 16);
	k->type = (uint8_t)rnd_val(s, 8);
	k->proto = (uint8_t)rnd_val(s, 8);
	k->ip_tos = (uint8_t)rnd_val(s, 8);
	k->ip_ttl = (uint8_t)rnd_val(s, 8);
	k->tcp_flags = (uint8_t)rnd_val(s, 8);
	k->icmp_type = (uint8_t)rnd_val(s, 8);
	k->icmp_code = (uint8_t)rnd_val(s, 8);
	k->forwarding_status = (uint8_t)rnd_val(s, 8);
	k->src_net = (uint8_t)rnd_val(s, 8);
	k->dst_net = (uint8_t)rnd_val(s, 8);
	k->flow_direction = (uint8_t)rnd_val(s, 1);
	k->bi_flow_direction = (uint8_t)rnd_val(s, 8);
	r->bytes = rnd_val(s, 64);
	r->packets = rnd_val(s, 64);
	if (rnd(s) % 4 == 0) /* a quarter of the keys are sparse: most runs of fields zero */
		memset((uint8_t *)k + 48, 0, 16 * 4);
}

/*
 * Drain a table holding recs[0..n) (distinct keys, so the entries are the records in order)
 * through nm_agg_drain_rows() and check, for every row: nm_encode_pb_row() writes the bytes
 * nm_encode_pb() writes for the original record (the old flusher path: decoded record, then
 * pb_body), at every capacity from too small to ample, and nothing past what it reports.
 */
struct row_check {
	const struct nm_flow_rec *recs;
	unsigned int seen;
	unsigned int short_caps; /* rows also checked at every short capacity */
};

/* agg.h's accessors (the top-N's second and rate, the Kafka group's address) against the key. */
static void
check_accessors(const uint64_t *ck, const struct nm_flow_key *k)
{
	static const size_t addr_off[4] = {
		offsetof(struct nm_flow_key, sampler_addr),
		offsetof(struct nm_flow_key, src_addr),
		offsetof(struct nm_flow_key, dst_addr),
		offsetof(struct nm_flow_key, next_hop),
	};
	uint8_t a[NM_ADDR_LEN];
	unsigned int i, w;

	assert_int_equal(nm_agg_ck_u64(ck, offsetof(struct nm_flow_key, time_received) / 4),
			 k->time_received);
	assert_int_equal(nm_agg_ck_u64(ck, offsetof(struct nm_flow_key, sampling_rate) / 4),
			 k->sampling_rate);
	assert_int_equal(nm_agg_ck_u64(ck, offsetof(struct nm_flow_key, src_mac) / 4), k->src_mac);
	for (i = 0; i < 4; i++) {
		nm_agg_ck_addr(ck, i, a);
		assert_memory_equal(a, (const uint8_t *)k + addr_off[i], NM_ADDR_LEN);
	}
	for (w = 0; w < NM_AGG_CK_WORDS; w++) {
		uint32_t want;

		memcpy(&want, (const uint8_t *)k + 4 * w, 4);
		/* An IPv4-mapped address' 00 00 ff ff word is the header's flag, not a word. */
		if (want != 0 && nm_agg_ck_word(ck, w) == 0) {
			static const uint8_t v4w[4] = {0, 0, 0xff, 0xff};

			assert_true(w >= addr_off[0] / 4 && w < addr_off[3] / 4 + 4 && w % 4 == 2);
			assert_memory_equal((const uint8_t *)k + 4 * w, v4w, 4);
			assert_true((ck[0] >> (NM_AGG_CK_V4_SHIFT + (w - addr_off[0] / 4) / 4)) &
				    1);
		} else {
			assert_int_equal(nm_agg_ck_word(ck, w), want);
		}
	}
}

static void
check_rows(const struct nm_agg_row *rows, unsigned int n, void *ctx)
{
	struct row_check *c = ctx;
	uint8_t want[NM_ENCODE_PB_MAX], got[NM_ENCODE_PB_MAX + 16];
	struct nm_flow_rec back;
	unsigned int i, j;
	size_t wn, gn, cap;

	for (i = 0; i < n; i++, c->seen++) {
		const struct nm_flow_rec *r = &c->recs[c->seen];

		nm_agg_row_rec(&rows[i], &back);
		assert_memory_equal(&back, r, sizeof(*r));
		check_accessors(rows[i].ck, &r->key);
		assert_int_equal(rows[i].flows, 1);
		wn = nm_encode_pb(r, 1, want, sizeof(want));
		assert_true(wn > 0);
		memset(got, 0x5a, sizeof(got));
		gn = nm_encode_pb_row(&rows[i], got, NM_ENCODE_PB_MAX);
		assert_int_equal(gn, wn);
		assert_memory_equal(got, want, wn);
		for (j = NM_ENCODE_PB_MAX; j < sizeof(got); j++)
			assert_int_equal(got[j], 0x5a);
		if (c->seen % 64 != 0)
			continue;
		c->short_caps++;
		for (cap = wn - 2; cap <= wn + 1; cap++) {
			memset(got, 0x5a, sizeof(got));
			gn = nm_encode_pb_row(&rows[i], got, cap);
			assert_int_equal(gn, cap >= wn ? wn : 0);
			if (gn != 0)
				assert_memory_equal(got, want, wn);
			for (j = gn; j < sizeof(got); j++)
				assert_int_equal(got[j], 0x5a);
		}
	}
}

static void
row_roundtrip(const struct nm_flow_rec *recs, unsigned int n)
{
	struct nm_agg_params ap = {.max_flows = 4 * n}; /* random keys are long: room in bytes */
	struct nm_agg_table *t = nm_agg_table_create(&ap);
	struct row_check c = {.recs = recs};

	assert_non_null(t);
	assert_int_equal(nm_agg_add_burst(t, recs, n), n);
	assert_int_equal(nm_agg_count(t), n); /* distinct keys: one entry each, in order */
	assert_int_equal(nm_agg_drain_rows(t, check_rows, &c), n);
	assert_int_equal(c.seen, n);
	assert_true(c.short_caps > 0);
	assert_int_equal(nm_agg_count(t), 0);
	nm_agg_table_free(t);
}

static void
test_pb_row_random(void **state)
{
	enum { N = 20000 };
	struct nm_flow_rec *recs = calloc(N, sizeof(*recs));
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	unsigned int i;

	(void)state;
	assert_non_null(recs);
	for (i = 0; i < N; i++)
		rnd_rec(&seed, &recs[i]);
	full_rec(&recs[0]);
	max_rec(&recs[1]); /* the largest body: pb_varint8's store must stay inside the buffer */
	row_roundtrip(recs, N);
	free(recs);
}

/* Records the decoders make from the corpus' real exports, keys as a second's table holds. */
static void
test_pb_row_corpus(void **state)
{
	static const char *const files[] = {
		"softflowd-v5.pcap",	       "softflowd-v9.pcap",
		"softflowd-v10.pcap",	       "softflowd-v10-ether.pcap",
		"softflowd-v10-bidir.pcap",    "softflowd-v9-sampled10.pcap",
		"pmacctd-nfprobe-v10-l2.pcap", "pmacctd-nfprobe-v9-rate10.pcap",
		"pmacctd-sfprobe-sflow5.pcap", "fprobe-v5.pcap",
	};
	struct nm_flow_rec *recs = calloc(SINK_KEEP, sizeof(*recs));
	unsigned int i, j, k, n, total = 0;
	char path[1024];

	(void)state;
	if (!corpus_present())
		skip();
	assert_non_null(recs);
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct fixture *f = fixture_new();

		snprintf(path, sizeof(path), "%s/generated/%s", NM_CORPORA, files[i]);
		feed_pcap(f, path);
		/* Distinct keys only (a repeated key would merge into one row). */
		for (j = 0, n = 0; j < f->s.n && j < SINK_KEEP; j++) {
			for (k = 0; k < n; k++)
				if (memcmp(&recs[k].key, &f->s.all[j].key, sizeof(recs[k].key)) ==
				    0)
					break;
			if (k == n)
				recs[n++] = f->s.all[j];
		}
		assert_true(n > 0);
		row_roundtrip(recs, n);
		total += n;
		fixture_free(f);
	}
	print_message("%u corpus records, encoded alike\n", total);
	free(recs);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pb_full),
		cmocka_unit_test(test_pb_sparse),
		cmocka_unit_test(test_pb_max),
		cmocka_unit_test(test_pb_short_cap),
		cmocka_unit_test(test_pb_protoc),
		cmocka_unit_test(test_json_exact),
		cmocka_unit_test(test_json_parse),
		cmocka_unit_test(test_json_addrs),
		cmocka_unit_test(test_json_short_cap),
		cmocka_unit_test(test_next_hop_none_and_flows),
		cmocka_unit_test(test_pb_row_random),
		cmocka_unit_test(test_pb_row_corpus),
	};

	return cmocka_run_group_tests(tests, setup_rcu, teardown_rcu);
}
