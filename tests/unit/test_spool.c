/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The Kafka sink's on-disk spool: entries come back in the order they were appended, across a
 * close/open (a crash leaves the same files), delivered entries are gone after the next open,
 * a torn tail or a flipped byte is detected by the CRC, counted and skipped while every intact
 * entry survives, a full spool refuses (counted) and accepts again once entries are released,
 * and a second engine cannot open a spool in use.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>
#include <cmocka.h>

#include "kafka/spool.h"

static char dir[256];

static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/nm-test-spool-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int
teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static struct nm_spool *
open_spool(uint64_t max, uint64_t seg)
{
	struct nm_spool_params p = {.dir = dir, .max_bytes = max, .segment_bytes = seg};
	char err[256];
	struct nm_spool *s = nm_spool_open(&p, err, sizeof(err));

	if (s == NULL)
		fail_msg("open: %s", err);
	return s;
}

/* Payload i: i+1 repetitions of a byte pattern that depends on i. */
static uint32_t
mk_payload(uint8_t *buf, unsigned int i)
{
	uint32_t n = 100 + (i * 37) % 900, j;

	for (j = 0; j < n; j++)
		buf[j] = (uint8_t)(i * 31 + j);
	return n;
}

static void
append_n(struct nm_spool *s, unsigned int from, unsigned int to)
{
	uint8_t buf[2048];
	unsigned int i;

	for (i = from; i < to; i++) {
		struct nm_spool_meta m = {
			.rows = i + 1, .key = i % 5, .packets = 10 * i, .bytes = 1000 * i};
		uint32_t n = mk_payload(buf, i);

		assert_int_equal(nm_spool_append(s, &m, buf, n), 0);
	}
}

/* Take the next entry and check it is payload i. */
static uint64_t
take_check(struct nm_spool *s, unsigned int i)
{
	struct nm_spool_meta m;
	const void *p;
	uint32_t len;
	uint8_t want[2048];
	uint32_t n = mk_payload(want, i);

	assert_int_equal(nm_spool_take(s, 1000, &m, &p, &len), 1);
	assert_int_equal(len, n);
	assert_memory_equal(p, want, n);
	assert_int_equal(m.rows, i + 1);
	assert_int_equal(m.key, i % 5);
	assert_int_equal(m.packets, 10 * i);
	assert_int_equal(m.bytes, 1000 * i);
	return m.seq;
}

static unsigned int
count_segments(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	unsigned int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		n += strstr(de->d_name, ".seg") != NULL;
	closedir(d);
	return n;
}

static void
test_order_and_release(void **state)
{
	struct nm_spool *s = open_spool(1 << 20, 4096);
	struct nm_spool_stats st;
	uint64_t seq[50];
	unsigned int i;
	const void *p;
	struct nm_spool_meta m;
	uint32_t len;

	(void)state;
	append_n(s, 0, 50);
	nm_spool_get_stats(s, &st);
	assert_int_equal(st.entries, 50);
	assert_int_equal(st.appended_entries, 50);
	assert_true(count_segments() > 3); /* 4 KiB segments: the entries span several */
	for (i = 0; i < 50; i++)
		seq[i] = take_check(s, i);
	assert_int_equal(nm_spool_take(s, 1000, &m, &p, &len), 0);
	/* Released out of order: nothing is forgotten before the oldest is. */
	for (i = 49; i > 0; i--)
		assert_int_equal(nm_spool_release(s, seq[i]), 0);
	nm_spool_get_stats(s, &st);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.rows, 1);
	assert_int_equal(nm_spool_release(s, seq[0]), 0);
	assert_int_equal(nm_spool_release(s, seq[0]), -ENOENT);
	nm_spool_get_stats(s, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.disk_bytes, 0);
	assert_int_equal(count_segments(), 0);
	nm_spool_close(s);
}

static void
test_untake_keeps_order(void **state)
{
	struct nm_spool *s = open_spool(1 << 20, 0);
	struct nm_spool_meta m;
	const void *p;
	uint32_t len;
	uint64_t s0, s1, s2;

	(void)state;
	append_n(s, 0, 5);
	s0 = take_check(s, 0);
	s1 = take_check(s, 1);
	s2 = take_check(s, 2);
	/* At most 3 taken at once. */
	assert_int_equal(nm_spool_take(s, 3, &m, &p, &len), -EBUSY);
	assert_int_equal(nm_spool_untake(s, s1), 0);
	assert_int_equal(nm_spool_release(s, s0), 0);
	/* The returned entry comes again before the ones never taken. */
	assert_int_equal(take_check(s, 1), s1);
	take_check(s, 3);
	nm_spool_untake_all(s);
	assert_int_equal(take_check(s, 1), s1);
	assert_int_equal(take_check(s, 2), s2);
	nm_spool_close(s);
}

static void
test_reopen_replays_rest(void **state)
{
	struct nm_spool *s = open_spool(1 << 20, 8192);
	struct nm_spool_stats st;
	unsigned int i;

	(void)state;
	append_n(s, 0, 30);
	for (i = 0; i < 10; i++)
		assert_int_equal(nm_spool_release(s, take_check(s, i)), 0);
	take_check(s, 10); /* taken, never acknowledged: must come back */
	nm_spool_close(s); /* as a crash would leave it (closing only adds a sync) */

	s = open_spool(1 << 20, 8192);
	nm_spool_get_stats(s, &st);
	assert_int_equal(st.recovered_entries, 20);
	assert_int_equal(st.entries, 20);
	assert_int_equal(st.corrupt, 0);
	for (i = 10; i < 30; i++)
		take_check(s, i);
	/* Appends after a reopen continue the sequence: order is kept across runs. */
	append_n(s, 30, 32);
	take_check(s, 30);
	take_check(s, 31);
	nm_spool_close(s);
}

static char *
last_segment(char *buf, size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char best[256] = "";

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strstr(de->d_name, ".seg") != NULL && strcmp(de->d_name, best) > 0)
			snprintf(best, sizeof(best), "%s", de->d_name);
	closedir(d);
	assert_true(best[0] != '\0');
	snprintf(buf, len, "%s/%.64s", dir, best);
	return buf;
}

static void
test_torn_tail(void **state)
{
	struct nm_spool *s = open_spool(1 << 20, 0);
	struct nm_spool_stats st;
	char path[512];
	struct stat sb;
	unsigned int i;

	(void)state;
	append_n(s, 0, 6);
	nm_spool_close(s);
	/* A crash in the middle of the last write: half of its header and payload are there. */
	assert_int_equal(stat(last_segment(path, sizeof(path)), &sb), 0);
	assert_int_equal(truncate(path, sb.st_size - 300), 0);

	s = open_spool(1 << 20, 0);
	nm_spool_get_stats(s, &st);
	assert_int_equal(st.recovered_entries, 5);
	assert_int_equal(st.corrupt, 1);
	assert_true(st.corrupt_bytes > 0 && st.corrupt_bytes < 2048);
	for (i = 0; i < 5; i++)
		take_check(s, i);
	/* New entries go to a fresh segment, never behind the garbage. */
	append_n(s, 6, 7);
	take_check(s, 6);
	nm_spool_close(s);
}

static void
test_corrupt_middle(void **state)
{
	struct nm_spool *s = open_spool(1 << 20, 0);
	struct nm_spool_stats st;
	char path[512];
	uint8_t b;
	int fd;

	(void)state;
	append_n(s, 0, 4);
	nm_spool_close(s);
	/* Flip one payload byte of entry 1 (the second): its CRC no longer matches. */
	fd = open(last_segment(path, sizeof(path)), O_RDWR);
	assert_true(fd >= 0);
	{
		off_t off = NM_SPOOL_SEG_HDR_LEN + NM_SPOOL_HDR_LEN + 100 + NM_SPOOL_HDR_LEN + 10;

		assert_int_equal(pread(fd, &b, 1, off), 1);
		b ^= 0x40;
		assert_int_equal(pwrite(fd, &b, 1, off), 1);
	}
	close(fd);

	s = open_spool(1 << 20, 0);
	nm_spool_get_stats(s, &st);
	assert_int_equal(st.recovered_entries, 3);
	assert_int_equal(st.corrupt, 1);
	assert_int_equal(st.corrupt_bytes, NM_SPOOL_HDR_LEN + 137);
	/* Its header is whole: the rows it held (entry 1 holds 2) are counted lost. */
	assert_int_equal(st.corrupt_rows, 2);
	assert_int_equal(st.corrupt_rows_open, 2);
	take_check(s, 0);
	take_check(s, 2);
	take_check(s, 3);
	nm_spool_close(s);
}

static void
test_full(void **state)
{
	struct nm_spool *s = open_spool(8192, 4096);
	struct nm_spool_stats st;
	uint8_t buf[2048];
	unsigned int i, ok = 0, which[40];
	int ret;

	(void)state;
	for (i = 0; i < 40; i++) {
		struct nm_spool_meta m = {
			.rows = i + 1, .key = i % 5, .packets = 10 * i, .bytes = 1000 * i};

		ret = nm_spool_append(s, &m, buf, mk_payload(buf, i));
		assert_true(ret == 0 || ret == -ENOSPC);
		if (ret == 0)
			which[ok++] = i;
	}
	nm_spool_get_stats(s, &st);
	assert_true(ok >= 5 && ok < 20);
	assert_int_equal(st.full, 40 - ok);
	assert_int_equal(st.appended_entries, ok);
	assert_true(st.disk_bytes <= 8192);
	/* Delivering everything frees the room again. */
	for (i = 0; i < ok; i++)
		assert_int_equal(nm_spool_release(s, take_check(s, which[i])), 0);
	append_n(s, 100, 101);
	nm_spool_close(s);
}

static void
test_locked(void **state)
{
	struct nm_spool_params p = {.dir = dir, .max_bytes = 1 << 20};
	struct nm_spool *s = open_spool(1 << 20, 0);
	char err[256];

	(void)state;
	assert_null(nm_spool_open(&p, err, sizeof(err)));
	assert_int_equal(errno, EBUSY);
	assert_non_null(strstr(err, "in use"));
	nm_spool_close(s);
	s = open_spool(1 << 20, 0);
	nm_spool_close(s);
}

static void
test_crc32c(void **state)
{
	(void)state;
	/* The check value of CRC-32C (RFC 3720, appendix B.4). */
	assert_int_equal(nm_crc32c(0, "123456789", 9), 0xe3069283);
	assert_int_equal(nm_crc32c(nm_crc32c(0, "1234", 4), "56789", 5), 0xe3069283);
}

/* The directory: created 0700 whatever the umask; refused unless 0700 and the engine's own. */
static void
test_dir_owner_mode(void **state)
{
	struct nm_spool_params p = {.max_bytes = 1 << 20};
	char sub[300], err[512], want[64];
	struct stat sb;
	struct nm_spool *s;
	mode_t old = umask(022);

	(void)state;
	snprintf(sub, sizeof(sub), "%s/new", dir);
	p.dir = sub;
	s = nm_spool_open(&p, err, sizeof(err));
	umask(old);
	if (s == NULL)
		fail_msg("open: %s", err);
	assert_int_equal(stat(sub, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0700);
	nm_spool_close(s);

	/* Group/other bits: refused, the message names the path, owner and mode. */
	assert_int_equal(chmod(sub, 0755), 0);
	assert_null(nm_spool_open(&p, err, sizeof(err)));
	assert_int_equal(errno, EPERM);
	print_message("%s\n", err);
	assert_non_null(strstr(err, sub));
	assert_non_null(strstr(err, "mode 0755"));
	snprintf(want, sizeof(want), "owned by uid %u", (unsigned int)geteuid());
	assert_non_null(strstr(err, want));
	assert_int_equal(chmod(sub, 0700), 0);

	/* Another owner: refused too (we are root in CI: chown works). */
	if (geteuid() == 0) {
		assert_int_equal(chown(sub, 65534, 65534), 0);
		assert_null(nm_spool_open(&p, err, sizeof(err)));
		assert_int_equal(errno, EPERM);
		assert_non_null(strstr(err, "owned by uid 65534"));
		assert_int_equal(chown(sub, 0, 0), 0);
	}
	s = nm_spool_open(&p, err, sizeof(err));
	if (s == NULL)
		fail_msg("open after chmod: %s", err);
	nm_spool_close(s);
}

/* A symbolic link planted under a segment's or the commit file's name is refused, not followed. */
static void
test_symlink_refused(void **state)
{
	struct nm_spool_params p = {.dir = dir, .max_bytes = 1 << 20};
	char path[512], victim[300], err[512];
	struct nm_spool *s;
	struct stat sb;
	FILE *f;

	(void)state;
	snprintf(victim, sizeof(victim), "%s.victim", dir);
	f = fopen(victim, "w");
	assert_non_null(f);
	fputs("precious\n", f);
	fclose(f);

	snprintf(path, sizeof(path), "%s/0000000000000001.seg", dir);
	assert_int_equal(symlink(victim, path), 0);
	assert_null(nm_spool_open(&p, err, sizeof(err)));
	assert_int_equal(errno, ELOOP);
	print_message("%s\n", err);
	assert_non_null(strstr(err, "0000000000000001.seg is a symbolic link"));
	assert_int_equal(unlink(path), 0);

	snprintf(path, sizeof(path), "%s/commit", dir);
	(void)unlink(path); /* the refused open made it already */
	assert_int_equal(symlink(victim, path), 0);
	assert_null(nm_spool_open(&p, err, sizeof(err)));
	assert_int_equal(errno, ELOOP);
	assert_non_null(strstr(err, "commit is a symbolic link"));
	assert_int_equal(unlink(path), 0);

	/* A FIFO under a segment's name: refused at once, not waited on. */
	snprintf(path, sizeof(path), "%s/0000000000000002.seg", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_null(nm_spool_open(&p, err, sizeof(err)));
	assert_non_null(strstr(err, "not a regular file"));
	assert_int_equal(unlink(path), 0);

	assert_int_equal(stat(victim, &sb), 0);
	assert_int_equal(sb.st_size, 9); /* never written, truncated or mapped over */
	assert_int_equal(unlink(victim), 0);
	s = open_spool(1 << 20, 0);
	nm_spool_close(s);
}

/*
 * An entry refused for good goes to the dead-letter file: the entries behind it come next, the
 * file holds it byte for byte as a segment entry, and a reopen does not replay it.
 */
static void
test_dead_letter(void **state)
{
	struct nm_spool *s = open_spool(1 << 20, 0);
	struct nm_spool_stats st;
	struct nm_spool_meta m;
	char path[512];
	uint8_t want[2048], got[4096];
	uint32_t n = mk_payload(want, 0);
	uint64_t seq;
	ssize_t r;
	int fd;

	(void)state;
	append_n(s, 0, 3);
	seq = take_check(s, 0);
	assert_int_equal(nm_spool_reject(s, seq), 1);
	assert_int_equal(take_check(s, 0), seq); /* a refusal returns it to the head */
	assert_int_equal(nm_spool_reject(s, seq), 2);
	assert_int_equal(nm_spool_dead_letter(s, seq, &m), 0);
	assert_int_equal(m.rows, 1);
	assert_int_equal(m.seq, seq);
	take_check(s, 1);
	nm_spool_get_stats(s, &st);
	assert_int_equal(st.rejected, 2);
	assert_int_equal(st.dead_entries, 1);
	assert_int_equal(st.dead_rows, 1);
	assert_int_equal(st.entries, 2);
	assert_int_equal(st.dead_bytes, NM_SPOOL_SEG_HDR_LEN + NM_SPOOL_HDR_LEN + n);
	nm_spool_close(s);

	snprintf(path, sizeof(path), "%s/%s", dir, NM_SPOOL_DEAD_NAME);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	r = read(fd, got, sizeof(got));
	close(fd);
	assert_int_equal(r, NM_SPOOL_SEG_HDR_LEN + NM_SPOOL_HDR_LEN + n);
	assert_memory_equal(got, "NMSPOOL1", 8);
	assert_memory_equal(got + NM_SPOOL_SEG_HDR_LEN + NM_SPOOL_HDR_LEN, want, n);

	s = open_spool(1 << 20, 0);
	nm_spool_get_stats(s, &st);
	assert_int_equal(st.recovered_entries, 2);
	assert_int_equal(st.dead_bytes, NM_SPOOL_SEG_HDR_LEN + NM_SPOOL_HDR_LEN + n);
	take_check(s, 1);
	take_check(s, 2);
	nm_spool_close(s);
}

/* The dead-letter file is bounded (segment_bytes): past it the entry still leaves the spool. */
static void
test_dead_letter_full(void **state)
{
	struct nm_spool *s = open_spool(1 << 20, 4096);
	struct nm_spool_stats st;
	struct nm_spool_meta m;
	unsigned int i, ok = 0, full = 0;

	(void)state;
	append_n(s, 0, 20);
	for (i = 0; i < 20; i++) {
		int ret = nm_spool_dead_letter(s, take_check(s, i), &m);

		assert_true(ret == 0 || ret == -ENOSPC);
		ok += ret == 0;
		full += ret == -ENOSPC;
	}
	nm_spool_get_stats(s, &st);
	assert_true(ok > 0 && full > 0);
	assert_int_equal(st.dead_entries, ok);
	assert_true(st.dead_bytes <= 4096);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.disk_bytes, 0);
	nm_spool_close(s);
}

/* A write that fails (here: the file size limit) is an error the caller sees, and counted. */
static void
test_write_error(void **state)
{
	struct nm_spool *s = open_spool(1 << 20, 0);
	struct nm_spool_stats st;
	struct nm_spool_meta m = {.rows = 1};
	struct rlimit old, lim;
	uint8_t buf[2048] = {0};
	int ret;

	(void)state;
	append_n(s, 0, 1);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 64; /* below the segment's size: not a byte more is written */
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	ret = nm_spool_append(s, &m, buf, sizeof(buf));
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(ret, -EFBIG);
	nm_spool_get_stats(s, &st);
	assert_int_equal(st.write_errors, 1);
	assert_int_equal(st.entries, 1);
	/* The segment was cut back: the entry before is intact, the next append works. */
	take_check(s, 0);
	append_n(s, 1, 2);
	take_check(s, 1);
	nm_spool_close(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test_setup_teardown(test_order_and_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_untake_keeps_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_replays_rest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_middle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_locked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_owner_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_letter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_letter_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_error, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
