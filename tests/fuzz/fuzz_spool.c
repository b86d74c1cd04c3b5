/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target: the Kafka spool's reader -- recovery of a spool directory from arbitrary
 * bytes, then the operations the sink performs on what was recovered.
 *
 * Input: byte 0 holds flags, then the files:
 *   flags & 1  the next 20 bytes are the commit file (segment, offset, CRC as nm_spool writes it)
 *   flags & 2  the rest is split in two segments (0000000000000001.seg and ...0002.seg) at an
 *              offset taken from the next 2 bytes; otherwise it is one segment
 *   flags & 4  a dead-letter file of the first 64 bytes of the rest exists too
 * nm_spool_open() indexes what it finds (every length and CRC hostile); then, driven by the
 * payload bytes, entries are taken, released, returned, refused, dead-lettered, a new one is
 * appended, the spool synced, closed and opened once more. Every entry taken must match its
 * CRC (the reader promises that) and the counters must add up: a spool that lies about its
 * content or loses count is a crash here.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka/spool.h"

static char dir[64];

static void
put_file(const char *name, const uint8_t *p, size_t n)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		__builtin_trap();
	if (n > 0 && write(fd, p, n) != (ssize_t)n)
		__builtin_trap();
	close(fd);
}

static void
clean(void)
{
	static const char *const names[] = {"lock",
					    "commit",
					    "0000000000000001.seg",
					    "0000000000000002.seg",
					    "0000000000000003.seg",
					    "0000000000000004.seg",
					    NM_SPOOL_DEAD_NAME};
	char path[128];
	unsigned int i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		(void)unlink(path);
	}
}

static void
check_balanced(const struct nm_spool *s)
{
	struct nm_spool_stats st;

	nm_spool_get_stats(s, &st);
	/* Every entry recovered or appended is waiting, released, or gone as corrupt/dead. */
	if (st.entries > st.recovered_entries + st.appended_entries || st.taken > st.entries ||
	    st.rows > st.recovered_rows + st.appended_rows + st.corrupt_rows)
		__builtin_trap();
}

static void
exercise(struct nm_spool *s, const uint8_t *ops, size_t n_ops)
{
	struct nm_spool_meta m;
	const void *payload;
	uint32_t len;
	uint64_t taken[8];
	unsigned int n_taken = 0, i;
	size_t o = 0;

	for (i = 0; i < 64; i++) {
		int ret = nm_spool_take(s, 8, &m, &payload, &len);
		uint8_t op = o < n_ops ? ops[o++] : 0;

		if (ret < 0 && ret != -EBUSY)
			break;
		if (ret == 1) {
			/* The payload must be readable to its end (ASan checks). */
			volatile uint8_t sink = len > 0 ? ((const uint8_t *)payload)[len - 1] : 0;

			(void)sink;
			taken[n_taken++] = m.seq;
		}
		if (n_taken == 0)
			break;
		switch (op % 5) {
		case 0:
			(void)nm_spool_release(s, taken[--n_taken]);
			break;
		case 1:
			(void)nm_spool_untake(s, taken[--n_taken]);
			break;
		case 2:
			(void)nm_spool_reject(s, taken[--n_taken]);
			break;
		case 3:
			(void)nm_spool_dead_letter(s, taken[--n_taken], &m);
			break;
		default:
			if (n_taken == 8 || ret == 0) {
				nm_spool_untake_all(s);
				n_taken = 0;
			}
			break;
		}
		check_balanced(s);
	}
	nm_spool_untake_all(s);
	m.rows = 3;
	m.key = 1;
	m.packets = 7;
	m.bytes = 9;
	(void)nm_spool_append(s, &m, ops, (uint32_t)(n_ops < 512 ? n_ops : 512));
	(void)nm_spool_sync(s);
	check_balanced(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nm_spool_params p = {.max_bytes = 1 << 20, .segment_bytes = 16384};
	struct nm_spool *s;
	char err[512];
	uint8_t flags;
	size_t split;

	if (dir[0] == '\0') {
		/* tmpfs when there is one: the target writes files for every input. */
		snprintf(dir, sizeof(dir), "%s/nmfuzz-spool-XXXXXX",
			 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
		if (mkdtemp(dir) == NULL)
			__builtin_trap();
	}
	p.dir = dir;
	if (size < 1)
		return 0;
	flags = data[0];
	data++;
	size--;
	if ((flags & 1) && size >= 20) {
		put_file("commit", data, 20);
		data += 20;
		size -= 20;
	}
	if ((flags & 2) && size >= 2) {
		split = ((size_t)data[0] << 8 | data[1]) % (size - 1);
		data += 2;
		size -= 2;
		put_file("0000000000000001.seg", data, split);
		put_file("0000000000000002.seg", data + split, size - split);
	} else {
		put_file("0000000000000001.seg", data, size);
	}
	if (flags & 4)
		put_file(NM_SPOOL_DEAD_NAME, data, size < 64 ? size : 64);

	s = nm_spool_open(&p, err, sizeof(err));
	if (s != NULL) {
		check_balanced(s);
		exercise(s, data, size);
		nm_spool_close(s);
		/* What this run left (released entries gone, the commit moved) must open again. */
		s = nm_spool_open(&p, err, sizeof(err));
		if (s != NULL) {
			exercise(s, data + size / 2, size - size / 2);
			nm_spool_close(s);
		}
	}
	clean();
	return 0;
}
