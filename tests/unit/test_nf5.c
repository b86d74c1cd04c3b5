/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * NetFlow v5 decoder: hand-built datagrams, hostile headers, and the corpus against TRUTH.tsv.
 * The fixture, its sink and the capture reader are decode_fixture.h's.
 */
#include "decode_fixture.h"

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v & 0xff;
}

/* A v5 datagram with n records: record i has srcaddr 10.0.0.i, dPkts i+1, dOctets 100*(i+1). */
static size_t
build_v5(uint8_t *buf, unsigned int n, uint16_t sampling)
{
	memset(buf, 0, 24 + 48 * n);
	put16(buf, 5);
	put16(buf + 2, (uint16_t)n);
	put32(buf + 4, 100000);	    /* sysUptime ms */
	put32(buf + 8, 1700000100); /* unix_secs */
	put32(buf + 16, 4242);	    /* flow_sequence */
	put16(buf + 22, sampling);
	for (unsigned int i = 0; i < n; i++) {
		uint8_t *r = buf + 24 + 48 * i;

		r[0] = 10;
		r[3] = (uint8_t)i;
		r[4] = 198;
		r[5] = 51;
		r[6] = 100;
		r[7] = 7;
		r[8] = 192;
		r[9] = 0;
		r[10] = 2;
		r[11] = 1;
		put16(r + 12, 3);
		put16(r + 14, 4);
		put32(r + 16, i + 1);
		put32(r + 20, 100 * (i + 1));
		put32(r + 24, 90000); /* First: 10 s before now */
		put32(r + 28, 99000); /* Last: 1 s before now */
		put16(r + 32, 443);
		put16(r + 34, 51000);
		r[37] = 0x12;
		r[38] = 6;
		r[39] = 0x20;
		put16(r + 40, 65001);
		put16(r + 42, 65002);
		r[44] = 24;
		r[45] = 16;
	}
	return 24 + 48 * n;
}

static void
test_fields(void **state)
{
	struct fixture *f = fixture_new();
	uint8_t buf[24 + 48 * 30];
	size_t len = build_v5(buf, 3, 0);
	const struct nm_flow_rec *r;
	char a[NM_ADDR_STRLEN];

	(void)state;
	assert_int_equal(nm_decode_datagram(&f->d, buf, len, &f->meta, &f->b), 3);
	nm_rec_batch_flush(&f->b);
	assert_int_equal(f->s.n, 3);
	r = &f->s.all[2];
	assert_string_equal(nm_addr_str(r->key.src_addr, a, sizeof(a)), "10.0.0.2");
	assert_string_equal(nm_addr_str(r->key.dst_addr, a, sizeof(a)), "198.51.100.7");
	assert_string_equal(nm_addr_str(r->key.next_hop, a, sizeof(a)), "192.0.2.1");
	assert_string_equal(nm_addr_str(r->key.sampler_addr, a, sizeof(a)), "192.0.2.9");
	assert_int_equal(r->key.type, NM_FLOW_NF5);
	assert_int_equal(r->key.in_if, 3);
	assert_int_equal(r->key.out_if, 4);
	assert_int_equal(r->packets, 3);
	assert_int_equal(r->bytes, 300);
	assert_int_equal(r->key.src_port, 443);
	assert_int_equal(r->key.dst_port, 51000);
	assert_int_equal(r->key.tcp_flags, 0x12);
	assert_int_equal(r->key.proto, 6);
	assert_int_equal(r->key.ip_tos, 0x20);
	assert_int_equal(r->key.src_as, 65001);
	assert_int_equal(r->key.dst_as, 65002);
	assert_int_equal(r->key.src_net, 24);
	assert_int_equal(r->key.dst_net, 16);
	assert_int_equal(r->key.sequence_num, 4242);
	assert_int_equal(r->key.etype, 0x0800);
	assert_int_equal(r->key.time_received, 1700000000);
	assert_int_equal(r->key.time_flow_start, 1700000100 - 10);
	assert_int_equal(r->key.time_flow_end, 1700000100 - 1);
	assert_int_equal(r->key.sampling_rate, 1); /* header says 0: the default */
	assert_int_equal(f->st.nf5.datagrams, 1);
	assert_int_equal(f->st.nf5.records, 3);
	fixture_free(f);
}

static void
test_sampling_interval(void **state)
{
	struct fixture *f = fixture_new();
	uint8_t buf[24 + 48];
	/* Mode bits 01 (deterministic) and interval 512. */
	size_t len = build_v5(buf, 1, (1u << 14) | 512);

	(void)state;
	f->d.default_sampling_rate = 7;
	assert_int_equal(nm_decode_datagram(&f->d, buf, len, &f->meta, &f->b), 1);
	assert_int_equal(f->recs[0].key.sampling_rate, 512);
	fixture_free(f);
}

static void
test_hostile(void **state)
{
	struct fixture *f = fixture_new();
	uint8_t buf[24 + 48 * 30];
	size_t len;

	(void)state;
	/* Short header. */
	len = build_v5(buf, 2, 0);
	assert_int_equal(nm_nf5_decode(&f->d, buf, 23, &f->meta, &f->b), -NM_DECODE_ERR_TRUNCATED);
	/* Count larger than the payload: one record missing. */
	assert_int_equal(nm_nf5_decode(&f->d, buf, len - 1, &f->meta, &f->b),
			 -NM_DECODE_ERR_TRUNCATED);
	/* Count 0, count 31, count 0xffff. */
	put16(buf + 2, 0);
	assert_int_equal(nm_nf5_decode(&f->d, buf, len, &f->meta, &f->b), -NM_DECODE_ERR_BAD_COUNT);
	put16(buf + 2, 31);
	assert_int_equal(nm_nf5_decode(&f->d, buf, len, &f->meta, &f->b), -NM_DECODE_ERR_BAD_COUNT);
	put16(buf + 2, 0xffff);
	assert_int_equal(nm_nf5_decode(&f->d, buf, len, &f->meta, &f->b), -NM_DECODE_ERR_BAD_COUNT);
	/* Wrong version through the decoder itself. */
	put16(buf, 6);
	assert_int_equal(nm_nf5_decode(&f->d, buf, len, &f->meta, &f->b),
			 -NM_DECODE_ERR_BAD_VERSION);
	/* Not a flow protocol at all. */
	assert_int_equal(nm_decode_datagram(&f->d, buf, len, &f->meta, &f->b),
			 -NM_DECODE_ERR_UNKNOWN_PROTO);
	assert_int_equal(nm_decode_datagram(&f->d, buf, 1, &f->meta, &f->b),
			 -NM_DECODE_ERR_UNKNOWN_PROTO);
	assert_int_equal(f->b.n, 0);
	assert_int_equal(f->st.nf5.bad, 6);
	assert_int_equal(f->st.err[NM_DECODE_ERR_TRUNCATED], 2);
	assert_int_equal(f->st.err[NM_DECODE_ERR_BAD_COUNT], 3);
	assert_int_equal(f->st.err[NM_DECODE_ERR_BAD_VERSION], 1);
	assert_int_equal(f->st.err[NM_DECODE_ERR_UNKNOWN_PROTO], 2);
	assert_int_equal(f->st.datagrams_unknown, 2);
	fixture_free(f);
}

/* Every NetFlow v5 capture of the corpus, decoded EAL-free, against tshark's totals. */
static void
test_corpus(void **state)
{
	char path[1024], line[2048];
	FILE *truth;
	unsigned int files = 0;

	(void)state;
	snprintf(path, sizeof(path), "%s/TRUTH.tsv", NM_CORPORA);
	truth = fopen(path, "r");
	if (truth == NULL) {
		print_message("corpus absent at %s: skipping the corpus test\n", NM_CORPORA);
		skip();
	}
	while (fgets(line, sizeof(line), truth) != NULL) {
		char file[512], protos[64];
		unsigned long long dgrams, records, pkts, bytes;
		struct fixture *f;
		bool invalid;

		if (sscanf(line, "%511s %63s %llu %llu %llu %llu", file, protos, &dgrams, &records,
			   &pkts, &bytes) != 6 ||
		    strcmp(protos, "nf5") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", NM_CORPORA, file);
		f = fixture_new();
		feed_pcap(f, path);
		/*
		 * logstash's netflow5_test_invalid01/02 claim 55582 and 163 records in a datagram
		 * that holds 30: the header is wrong, so the engine rejects them (tshark decodes
		 * the 30 that are there). Everything else must match tshark exactly.
		 */
		invalid = strstr(file, "invalid") != NULL;
		print_message("%-60s truth %llu dgrams %llu recs %llu pkts %llu bytes | ours %llu "
			      "dgrams %u recs %llu pkts %llu bytes%s\n",
			      file, dgrams, records, pkts, bytes,
			      (unsigned long long)f->st.nf5.datagrams, f->s.n, f->s.pkts,
			      f->s.bytes, invalid ? " (invalid: rejected)" : "");
		assert_int_equal(f->st.nf5.datagrams, dgrams);
		if (invalid) {
			assert_int_equal(f->s.n, 0);
			assert_int_equal(f->st.err[NM_DECODE_ERR_BAD_COUNT], dgrams);
		} else {
			assert_int_equal(f->s.n, records);
			assert_int_equal(f->s.pkts, pkts);
			assert_int_equal(f->s.bytes, bytes);
			assert_int_equal(f->st.nf5.bad, 0);
		}
		files++;
		fixture_free(f);
	}
	fclose(truth);
	assert_true(files >= 5);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_sampling_interval),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_corpus),
	};

	return cmocka_run_group_tests(tests, setup_rcu, teardown_rcu);
}
