/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The Kafka sink's on-disk spool (format and policy in spool.h). An in-memory index of every
 * entry not yet released (a ring, in sequence order) tells where each one is, so taking,
 * returning and releasing never scan the files; the files are read once, at open, to rebuild it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#ifdef __SSE4_2__
#include <nmmintrin.h>
#endif

#include "spool.h"

#define SEG_MAGIC "NMSPOOL1"
#define ENT_MAGIC 0x52534d4eu
#define COMMIT_LEN 20

enum ent_state { ENT_WAITING = 0, ENT_TAKEN, ENT_DONE };

struct ent {
	uint64_t seq;
	uint64_t seg;
	uint64_t off; /* of the header in the segment */
	uint64_t packets;
	uint64_t bytes;
	uint32_t len;
	uint32_t rows;
	uint32_t key;
	uint16_t rejects; /* permanent refusals by Kafka since open (nm_spool_reject) */
	uint8_t state;
};

struct seg {
	uint64_t id;
	uint64_t size; /* bytes in the file */
	uint64_t live; /* index entries in it that are not released */
};

struct nm_spool {
	char *dir;
	int dirfd;
	int lockfd;
	int commitfd;
	uint64_t max_bytes;
	uint64_t segment_bytes;

	struct seg *segs; /* sorted by id */
	unsigned int n_segs, cap_segs;
	int wfd; /* the segment being appended to (the last of segs), -1: none */
	uint64_t wseg;
	int rfd; /* a read handle on segment rseg, -1: none */
	uint64_t rseg;
	bool dirty; /* written since the last sync */

	struct ent *ring; /* entries not released, oldest first */
	size_t cap, head, count;
	size_t rd; /* every entry before ring index head+rd is taken or done */
	uint64_t next_seq;

	uint8_t *buf; /* payload of the last nm_spool_take */
	size_t buf_cap;

	int deadfd;	    /* the dead-letter file, opened on first use; -1: not open */
	uint64_t dead_size; /* its size */

	struct nm_spool_stats st;
};

#define ST_ADD(s, f, v) __atomic_fetch_add(&(s)->st.f, (uint64_t)(v), __ATOMIC_RELAXED)
#define ST_SUB(s, f, v) __atomic_fetch_sub(&(s)->st.f, (uint64_t)(v), __ATOMIC_RELAXED)
#define ST_GET(s, f) __atomic_load_n(&(s)->st.f, __ATOMIC_RELAXED)

/*
 * A sync (or commit write) failed. After a failed fdatasync the kernel may already have dropped
 * the dirty pages, so what was written since the last good sync may not survive a power cut:
 * never ignored, counted and said (the first time, then every 100th).
 */
static void
sync_failed(struct nm_spool *s, const char *what, int err)
{
	uint64_t n = __atomic_add_fetch(&s->st.sync_errors, 1, __ATOMIC_RELAXED);

	if (n == 1 || n % 100 == 0)
		fprintf(stderr,
			"kafka spool %s: %s failed: %s (%" PRIu64 " sync errors so far); entries "
			"written since the last good sync may not survive a power failure\n",
			s->dir, what, strerror(err), n);
}

/* ------------------------------------------------------------------ CRC32C */

#ifndef __SSE4_2__
static uint32_t crc_table[256];

static void
crc_init(void)
{
	uint32_t i, j, c;

	if (crc_table[1] != 0)
		return;
	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[i] = c;
	}
}
#endif

uint32_t
nm_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	crc = ~crc;
#ifdef __SSE4_2__
	while (len >= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		crc = (uint32_t)_mm_crc32_u64(crc, v);
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		crc = _mm_crc32_u8(crc, *p++);
#else
	crc_init();
	while (len-- > 0)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
#endif
	return ~crc;
}

/* ------------------------------------------------------------------ headers */

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void
hdr_build(uint8_t *h, const struct nm_spool_meta *m, const void *payload, uint32_t len)
{
	put32(h, ENT_MAGIC);
	put32(h + 4, len);
	put64(h + 8, m->seq);
	put32(h + 16, m->rows);
	put32(h + 20, m->key);
	put64(h + 24, m->packets);
	put64(h + 32, m->bytes);
	put32(h + 40, 0);
	put32(h + 44, nm_crc32c(nm_crc32c(0, h, 44), payload, len));
}

/*
 * Is there a whole, valid entry at p (avail bytes from there to the end of the segment)? Fills
 * m and *len when so.
 */
static bool
hdr_check(const uint8_t *p, uint64_t avail, struct nm_spool_meta *m, uint32_t *len)
{
	uint32_t n;

	if (avail < NM_SPOOL_HDR_LEN || get32(p) != ENT_MAGIC)
		return false;
	n = get32(p + 4);
	if (n > NM_SPOOL_MAX_PAYLOAD || (uint64_t)n > avail - NM_SPOOL_HDR_LEN)
		return false;
	if (nm_crc32c(nm_crc32c(0, p, 44), p + NM_SPOOL_HDR_LEN, n) != get32(p + 44))
		return false;
	m->seq = get64(p + 8);
	m->rows = get32(p + 16);
	m->key = get32(p + 20);
	m->packets = get64(p + 24);
	m->bytes = get64(p + 32);
	*len = n;
	return true;
}

/* ------------------------------------------------------------------ index */

static struct ent *
ent_at(const struct nm_spool *s, size_t i)
{
	return &s->ring[(s->head + i) & (s->cap - 1)];
}

static int
ring_push(struct nm_spool *s, const struct ent *e)
{
	if (s->count == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 1024, i;
		struct ent *n = malloc(ncap * sizeof(*n));

		if (n == NULL)
			return -ENOMEM;
		for (i = 0; i < s->count; i++)
			n[i] = *ent_at(s, i);
		free(s->ring);
		s->ring = n;
		s->cap = ncap;
		s->head = 0;
	}
	*ent_at(s, s->count) = *e;
	s->count++;
	return 0;
}

/* Index (from head) of the entry seq, or -1. Entries are in ascending seq order. */
static long
ring_find(const struct nm_spool *s, uint64_t seq)
{
	size_t lo = 0, hi = s->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t v = ent_at(s, mid)->seq;

		if (v == seq)
			return (long)mid;
		if (v < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static struct seg *
seg_find(struct nm_spool *s, uint64_t id)
{
	unsigned int i;

	for (i = 0; i < s->n_segs; i++)
		if (s->segs[i].id == id)
			return &s->segs[i];
	return NULL;
}

static struct seg *
seg_add(struct nm_spool *s, uint64_t id, uint64_t size)
{
	if (s->n_segs == s->cap_segs) {
		unsigned int ncap = s->cap_segs ? s->cap_segs * 2 : 16;
		struct seg *n = realloc(s->segs, ncap * sizeof(*n));

		if (n == NULL)
			return NULL;
		s->segs = n;
		s->cap_segs = ncap;
	}
	s->segs[s->n_segs].id = id;
	s->segs[s->n_segs].size = size;
	s->segs[s->n_segs].live = 0;
	return &s->segs[s->n_segs++];
}

static void
seg_name(char *buf, size_t len, uint64_t id)
{
	snprintf(buf, len, "%016" PRIu64 ".seg", id);
}

static uint64_t
disk_bytes(const struct nm_spool *s)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < s->n_segs; i++)
		n += s->segs[i].size;
	return n;
}

static void
seg_remove(struct nm_spool *s, uint64_t id)
{
	char name[64];
	unsigned int i;

	for (i = 0; i < s->n_segs && s->segs[i].id != id; i++)
		;
	if (i == s->n_segs)
		return;
	if (s->wfd >= 0 && s->wseg == id) {
		close(s->wfd);
		s->wfd = -1;
	}
	if (s->rfd >= 0 && s->rseg == id) {
		close(s->rfd);
		s->rfd = -1;
	}
	seg_name(name, sizeof(name), id);
	(void)unlinkat(s->dirfd, name, 0);
	memmove(&s->segs[i], &s->segs[i + 1], (s->n_segs - i - 1) * sizeof(s->segs[0]));
	s->n_segs--;
	__atomic_store_n(&s->st.disk_bytes, disk_bytes(s), __ATOMIC_RELAXED);
}

static void
commit_write(struct nm_spool *s, uint64_t seg, uint64_t off)
{
	uint8_t c[COMMIT_LEN];

	put64(c, seg);
	put64(c + 8, off);
	put32(c + 16, nm_crc32c(0, c, 16));
	/* A failure means the next start may replay delivered entries again: counted, said. */
	if (pwrite(s->commitfd, c, sizeof(c), 0) != (ssize_t)sizeof(c))
		sync_failed(s, "write of the commit file", errno != 0 ? errno : EIO);
}

/* Forget done entries at the head; delete segments left without live entries. */
static void
ring_trim(struct nm_spool *s)
{
	uint64_t cseg = 0, coff = 0;
	bool moved = false;

	while (s->count > 0 && ent_at(s, 0)->state == ENT_DONE) {
		struct ent *e = ent_at(s, 0);
		struct seg *g = seg_find(s, e->seg);

		cseg = e->seg;
		coff = e->off + NM_SPOOL_HDR_LEN + e->len;
		moved = true;
		if (g != NULL && g->live > 0 && --g->live == 0 && (s->wfd < 0 || g->id != s->wseg))
			seg_remove(s, g->id);
		s->head = (s->head + 1) & (s->cap - 1);
		s->count--;
		if (s->rd > 0)
			s->rd--;
	}
	if (!moved)
		return;
	if (s->count == 0) {
		/* Everything delivered: the open segment goes too, a new one starts when needed. */
		while (s->n_segs > 0)
			seg_remove(s, s->segs[0].id);
	}
	commit_write(s, cseg, coff);
}

/* ------------------------------------------------------------------ open */

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The rows a corrupt region held, as far as a header at p says: only a whole header with our
 * magic whose row count is plausible (every row takes at least one payload byte) is believed;
 * otherwise the rows are unknown (0) and the region counts in corrupt alone.
 */
static uint32_t
claimed_rows(const uint8_t *p, uint64_t avail)
{
	uint32_t len, rows;

	if (avail < NM_SPOOL_HDR_LEN || get32(p) != ENT_MAGIC)
		return 0;
	len = get32(p + 4);
	rows = get32(p + 16);
	return len <= NM_SPOOL_MAX_PAYLOAD && rows <= len ? rows : 0;
}

static void
note_corrupt(struct nm_spool *s, uint64_t id, uint64_t off, uint64_t n, uint64_t rows, bool at_open)
{
	ST_ADD(s, corrupt, 1);
	ST_ADD(s, corrupt_bytes, n);
	ST_ADD(s, corrupt_rows, rows);
	if (at_open)
		ST_ADD(s, corrupt_rows_open, rows);
	fprintf(stderr,
		"kafka spool %s: segment %016" PRIu64 ": %" PRIu64 " corrupt or torn bytes "
		"at offset %" PRIu64 " skipped (%" PRIu64 " records lost%s)\n",
		s->dir, id, n, off, rows, rows == 0 ? ", or unknown: no whole header" : "");
}

/*
 * Open a file of the spool directory. Never through a symbolic link (O_NOFOLLOW) and only a
 * regular file: a link planted in the directory could make the engine read or truncate any
 * file it can reach. O_NONBLOCK keeps a planted FIFO from blocking the open. -errno, with a
 * message naming the file, on refusal.
 */
static int
open_file(const struct nm_spool *s, const char *name, int flags, char *err, size_t errlen)
{
	struct stat sb;
	int fd, ret;

	fd = openat(s->dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		if (ret == -ELOOP)
			snprintf(err, errlen,
				 "spool_dir %s: %s is a symbolic link; refused (spool files are "
				 "never opened through a link: remove it)",
				 s->dir, name);
		else
			snprintf(err, errlen, "spool_dir %s/%s: %s", s->dir, name, strerror(errno));
		return ret;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "spool_dir %s: %s is not a regular file; refused (remove it)",
			 s->dir, name);
		close(fd);
		return -EINVAL;
	}
	return fd;
}

/* Index the valid entries of one segment from offset start on. */
static int
scan_segment(struct nm_spool *s, uint64_t id, uint64_t start, char *err, size_t errlen)
{
	char name[64];
	struct stat sb;
	const uint8_t *map = NULL;
	struct seg *g;
	uint64_t off, size;
	int fd, ret = 0;

	seg_name(name, sizeof(name), id);
	fd = open_file(s, name, O_RDONLY | O_NONBLOCK, err, errlen);
	if (fd < 0)
		return fd;
	if (fstat(fd, &sb) != 0) {
		ret = -errno;
		snprintf(err, errlen, "spool %s/%s: %s", s->dir, name, strerror(errno));
		close(fd);
		return ret;
	}
	size = (uint64_t)sb.st_size;
	if (size > 0) {
		map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED) {
			snprintf(err, errlen, "spool %s/%s: mmap: %s", s->dir, name,
				 strerror(errno));
			close(fd);
			return -errno;
		}
	}
	close(fd);
	g = seg_add(s, id, size);
	if (g == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	if (size < NM_SPOOL_SEG_HDR_LEN || memcmp(map, SEG_MAGIC, NM_SPOOL_SEG_HDR_LEN) != 0) {
		note_corrupt(s, id, 0, size, 0, true);
		goto out;
	}
	off = start > NM_SPOOL_SEG_HDR_LEN ? start : NM_SPOOL_SEG_HDR_LEN;
	while (off < size) {
		struct nm_spool_meta m;
		struct ent e;
		uint32_t len;
		uint64_t p;

		if (!hdr_check(map + off, size - off, &m, &len)) {
			/* Resynchronise on the next offset that holds a whole valid entry. */
			for (p = off + 1; p < size; p++)
				if (size - p >= 4 && get32(map + p) == ENT_MAGIC &&
				    hdr_check(map + p, size - p, &m, &len))
					break;
			note_corrupt(s, id, off, p - off, claimed_rows(map + off, size - off),
				     true);
			off = p;
			continue;
		}
		memset(&e, 0, sizeof(e));
		e.seq = m.seq;
		e.seg = id;
		e.off = off;
		e.len = len;
		e.rows = m.rows;
		e.key = m.key;
		e.packets = m.packets;
		e.bytes = m.bytes;
		/* Sequences only grow; an older one here would break the order of the index. */
		if (s->count > 0 && e.seq <= ent_at(s, s->count - 1)->seq) {
			note_corrupt(s, id, off, NM_SPOOL_HDR_LEN + len, m.rows, true);
		} else {
			ret = ring_push(s, &e);
			if (ret != 0)
				goto out;
			g->live++;
			if (e.seq >= s->next_seq)
				s->next_seq = e.seq + 1;
			ST_ADD(s, entries, 1);
			ST_ADD(s, rows, e.rows);
			ST_ADD(s, payload_bytes, e.len);
			ST_ADD(s, recovered_entries, 1);
			ST_ADD(s, recovered_rows, e.rows);
		}
		off += NM_SPOOL_HDR_LEN + len;
	}
out:
	if (map != NULL)
		munmap((void *)map, size);
	if (ret == 0 && g != NULL && g->live == 0)
		seg_remove(s, id);
	return ret;
}

/*
 * The spool directory holds rows an attacker would like to read, forge or delete, and files the
 * engine truncates and unlinks: it must belong to the engine's user and be closed to everyone
 * else (0700). A missing one is created so; an existing one that is not is refused rather than
 * "fixed", since someone else may already have planted files in it. The path itself may be a
 * symbolic link (e.g. onto a data disk): what is checked is the directory it leads to.
 */
static int
dir_open(struct nm_spool *s, const char *dir, char *err, size_t errlen)
{
	struct stat sb;
	bool made = false;
	int ret;

	if (mkdir(dir, 0700) == 0)
		made = true;
	else if (errno != EEXIST) {
		ret = -errno;
		snprintf(err, errlen, "spool_dir %s: cannot create: %s", dir, strerror(errno));
		return ret;
	}
	s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "spool_dir %s: %s", dir, strerror(errno));
		return ret;
	}
	/* mkdir's mode went through the umask; the directory we made is exactly 0700. */
	if (made && fchmod(s->dirfd, 0700) != 0) {
		ret = -errno;
		snprintf(err, errlen, "spool_dir %s: chmod 0700: %s", dir, strerror(errno));
		return ret;
	}
	if (fstat(s->dirfd, &sb) != 0) {
		ret = -errno;
		snprintf(err, errlen, "spool_dir %s: %s", dir, strerror(errno));
		return ret;
	}
	if (sb.st_uid != geteuid() || (sb.st_mode & 0777) != 0700) {
		snprintf(
			err, errlen,
			"spool_dir %s: owned by uid %u with mode %04o; refused: it must be owned "
			"by the engine's user (uid %u) with mode 0700 (chown %u %s; chmod 0700 %s)",
			dir, (unsigned int)sb.st_uid, (unsigned int)(sb.st_mode & 07777),
			(unsigned int)geteuid(), (unsigned int)geteuid(), dir, dir);
		return -EPERM;
	}
	return 0;
}

/* The size of a dead-letter file left by an earlier run (it is not replayed). */
static int
dead_stat(struct nm_spool *s, char *err, size_t errlen)
{
	struct stat sb;

	if (fstatat(s->dirfd, NM_SPOOL_DEAD_NAME, &sb, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "spool_dir %s: %s is not a regular file; refused (remove it)",
			 s->dir, NM_SPOOL_DEAD_NAME);
		return -EINVAL;
	}
	s->dead_size = (uint64_t)sb.st_size;
	__atomic_store_n(&s->st.dead_bytes, s->dead_size, __ATOMIC_RELAXED);
	return 0;
}

struct nm_spool *
nm_spool_open(const struct nm_spool_params *p, char *err, size_t errlen)
{
	struct nm_spool *s;
	uint64_t *ids = NULL, cseg = 0, coff = 0;
	size_t n_ids = 0, cap_ids = 0, i;
	uint8_t c[COMMIT_LEN];
	struct dirent *de;
	DIR *d = NULL;
	int fd, ret = -ENOMEM;

	if (p == NULL || p->dir == NULL || p->dir[0] == '\0') {
		snprintf(err, errlen, "spool_dir: empty");
		errno = EINVAL;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->dir = strdup(p->dir)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s->dirfd = s->lockfd = s->commitfd = s->wfd = s->rfd = s->deadfd = -1;
	s->next_seq = 1;
	s->max_bytes = p->max_bytes;
	s->segment_bytes = p->segment_bytes;
	if (s->segment_bytes == 0) {
		s->segment_bytes = p->max_bytes / 8;
		if (s->segment_bytes > 64u << 20)
			s->segment_bytes = 64u << 20;
		if (s->segment_bytes < 64u << 10)
			s->segment_bytes = 64u << 10;
	}
	ret = dir_open(s, p->dir, err, errlen);
	if (ret != 0)
		goto fail;
	s->lockfd = open_file(s, "lock", O_RDWR | O_CREAT, err, errlen);
	if (s->lockfd < 0) {
		ret = s->lockfd;
		goto fail;
	}
	if (flock(s->lockfd, LOCK_EX | LOCK_NB) != 0) {
		ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
		snprintf(err, errlen, "spool_dir %s: %s", p->dir,
			 ret == -EBUSY ? "in use by another engine (its lock file is held)"
				       : strerror(errno));
		goto fail;
	}
	s->commitfd = open_file(s, "commit", O_RDWR | O_CREAT, err, errlen);
	if (s->commitfd < 0) {
		ret = s->commitfd;
		goto fail;
	}
	ret = dead_stat(s, err, errlen);
	if (ret != 0)
		goto fail;
	if (pread(s->commitfd, c, sizeof(c), 0) == (ssize_t)sizeof(c) &&
	    nm_crc32c(0, c, 16) == get32(c + 16)) {
		cseg = get64(c);
		coff = get64(c + 8);
	}

	fd = fcntl(s->dirfd, F_DUPFD_CLOEXEC, 0);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL) {
		ret = -errno;
		if (fd >= 0)
			close(fd);
		snprintf(err, errlen, "spool_dir %s: %s", p->dir, strerror(errno));
		goto fail;
	}
	while ((de = readdir(d)) != NULL) {
		char *end;
		unsigned long long id = strtoull(de->d_name, &end, 10);

		if (strlen(de->d_name) != 20 || strspn(de->d_name, "0123456789") != 16 ||
		    strcmp(end, ".seg") != 0)
			continue;
		if (n_ids == cap_ids) {
			uint64_t *n;

			cap_ids = cap_ids ? cap_ids * 2 : 64;
			n = realloc(ids, cap_ids * sizeof(*n));

			if (n == NULL) {
				snprintf(err, errlen, "out of memory");
				ret = -ENOMEM;
				goto fail;
			}
			ids = n;
		}
		ids[n_ids++] = id;
	}
	closedir(d);
	d = NULL;
	qsort(ids, n_ids, sizeof(*ids), cmp_u64);
	for (i = 0; i < n_ids; i++) {
		char name[64];

		if (ids[i] < cseg) {
			/* Delivered before the crash, deletion did not happen: do it now. */
			seg_name(name, sizeof(name), ids[i]);
			(void)unlinkat(s->dirfd, name, 0);
			continue;
		}
		ret = scan_segment(s, ids[i], ids[i] == cseg ? coff : 0, err, errlen);
		if (ret != 0)
			goto fail;
	}
	/* New segments get ids above everything seen, the commit position included. */
	s->wseg = (n_ids > 0 ? ids[n_ids - 1] : 0) > cseg ? ids[n_ids - 1] : cseg;
	free(ids);
	ids = NULL;
	__atomic_store_n(&s->st.disk_bytes, disk_bytes(s), __ATOMIC_RELAXED);
	if (s->st.recovered_entries > 0 || s->st.corrupt > 0)
		fprintf(stderr,
			"kafka spool %s: %" PRIu64 " entries (%" PRIu64 " rows, %" PRIu64
			" bytes) left by an earlier run will be replayed; %" PRIu64
			" corrupt region(s) (%" PRIu64 " bytes) skipped\n",
			s->dir, s->st.recovered_entries, s->st.recovered_rows, s->st.payload_bytes,
			s->st.corrupt, s->st.corrupt_bytes);
	return s;

fail:
	if (d != NULL)
		closedir(d);
	free(ids);
	nm_spool_close(s);
	errno = -ret;
	return NULL;
}

static int
seg_start(struct nm_spool *s)
{
	char name[64];
	uint64_t id = s->wseg + 1;
	int fd;

	seg_name(name, sizeof(name), id);
	/* A new name: whatever exists under it was not made by this spool. */
	fd = openat(s->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, SEG_MAGIC, NM_SPOOL_SEG_HDR_LEN) != NM_SPOOL_SEG_HDR_LEN ||
	    seg_add(s, id, NM_SPOOL_SEG_HDR_LEN) == NULL) {
		int ret = errno ? -errno : -EIO;

		close(fd);
		(void)unlinkat(s->dirfd, name, 0);
		return ret;
	}
	/* The new name must survive a power cut as well as the data in it. */
	if (fsync(s->dirfd) != 0)
		sync_failed(s, "fsync of the directory", errno);
	s->wfd = fd;
	s->wseg = id;
	return 0;
}

int
nm_spool_append(struct nm_spool *s, struct nm_spool_meta *m, const void *payload, uint32_t len)
{
	uint8_t h[NM_SPOOL_HDR_LEN];
	struct iovec iov[2];
	struct seg *g;
	struct ent e;
	uint64_t need = NM_SPOOL_HDR_LEN + (uint64_t)len;
	bool new_seg;
	ssize_t w;
	int ret;

	if (len > NM_SPOOL_MAX_PAYLOAD)
		return -EMSGSIZE;
	g = s->wfd >= 0 ? seg_find(s, s->wseg) : NULL;
	new_seg = g == NULL || g->size >= s->segment_bytes;
	if (disk_bytes(s) + need + (new_seg ? NM_SPOOL_SEG_HDR_LEN : 0) > s->max_bytes) {
		ST_ADD(s, full, 1);
		return -ENOSPC;
	}
	if (new_seg) {
		if (s->wfd >= 0) {
			if (fdatasync(s->wfd) != 0)
				sync_failed(s, "fdatasync of a full segment", errno);
			close(s->wfd);
			s->wfd = -1;
			/* A full segment whose entries were all delivered meanwhile can go now. */
			if (g != NULL && g->live == 0)
				seg_remove(s, g->id);
		}
		ret = seg_start(s);
		if (ret != 0) {
			ST_ADD(s, write_errors, 1);
			return ret;
		}
		g = seg_find(s, s->wseg);
	}
	m->seq = s->next_seq;
	hdr_build(h, m, payload, len);
	iov[0].iov_base = h;
	iov[0].iov_len = sizeof(h);
	iov[1].iov_base = (void *)(uintptr_t)payload;
	iov[1].iov_len = len;
	w = pwritev(s->wfd, iov, 2, (off_t)g->size);
	if (w != (ssize_t)need) {
		ret = w < 0 ? -errno : -ENOSPC;
		/* Cut a partial entry off again, so the segment stays clean. */
		(void)ftruncate(s->wfd, (off_t)g->size);
		ST_ADD(s, write_errors, 1);
		return ret;
	}
	memset(&e, 0, sizeof(e));
	e.seq = m->seq;
	e.seg = g->id;
	e.off = g->size;
	e.len = len;
	e.rows = m->rows;
	e.key = m->key;
	e.packets = m->packets;
	e.bytes = m->bytes;
	ret = ring_push(s, &e);
	if (ret != 0) {
		(void)ftruncate(s->wfd, (off_t)g->size);
		ST_ADD(s, write_errors, 1);
		return ret;
	}
	s->next_seq++;
	g->size += need;
	g->live++;
	s->dirty = true;
	__atomic_store_n(&s->st.disk_bytes, disk_bytes(s), __ATOMIC_RELAXED);
	ST_ADD(s, entries, 1);
	ST_ADD(s, rows, m->rows);
	ST_ADD(s, payload_bytes, len);
	ST_ADD(s, appended_entries, 1);
	ST_ADD(s, appended_rows, m->rows);
	return 0;
}

static void
mark_done(struct nm_spool *s, struct ent *e)
{
	if (e->state == ENT_TAKEN)
		ST_SUB(s, taken, 1);
	e->state = ENT_DONE;
	ST_SUB(s, entries, 1);
	ST_SUB(s, rows, e->rows);
	ST_SUB(s, payload_bytes, e->len);
}

static int
read_entry(struct nm_spool *s, const struct ent *e)
{
	char name[64];
	size_t need = NM_SPOOL_HDR_LEN + (size_t)e->len;
	ssize_t r;

	if (s->rfd < 0 || s->rseg != e->seg) {
		if (s->rfd >= 0)
			close(s->rfd);
		seg_name(name, sizeof(name), e->seg);
		s->rfd = openat(s->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (s->rfd < 0)
			return -errno;
		s->rseg = e->seg;
	}
	if (need > s->buf_cap) {
		uint8_t *n = realloc(s->buf, need);

		if (n == NULL)
			return -ENOMEM;
		s->buf = n;
		s->buf_cap = need;
	}
	r = pread(s->rfd, s->buf, need, (off_t)e->off);
	if (r < 0)
		return -errno;
	return r == (ssize_t)need ? 0 : -ENODATA;
}

int
nm_spool_take(struct nm_spool *s, unsigned int max_taken, struct nm_spool_meta *m,
	      const void **payload, uint32_t *len)
{
	while (s->rd < s->count) {
		struct ent *e = ent_at(s, s->rd);
		struct nm_spool_meta chk;
		uint32_t n;
		int ret;

		if (e->state != ENT_WAITING) {
			s->rd++;
			continue;
		}
		if (ST_GET(s, taken) >= max_taken)
			return -EBUSY;
		ret = read_entry(s, e);
		if (ret == -ENOMEM || ret == -EMFILE || ret == -ENFILE)
			return ret;
		if (ret != 0 || !hdr_check(s->buf, NM_SPOOL_HDR_LEN + (uint64_t)e->len, &chk, &n) ||
		    chk.seq != e->seq) {
			/* Changed under us since it was written or indexed: skip it, counted. */
			note_corrupt(s, e->seg, e->off, NM_SPOOL_HDR_LEN + (uint64_t)e->len,
				     e->rows, false);
			mark_done(s, e);
			s->rd++;
			ring_trim(s);
			continue;
		}
		e->state = ENT_TAKEN;
		ST_ADD(s, taken, 1);
		s->rd++;
		*m = chk;
		*payload = s->buf + NM_SPOOL_HDR_LEN;
		*len = n;
		return 1;
	}
	return 0;
}

int
nm_spool_release(struct nm_spool *s, uint64_t seq)
{
	long i = ring_find(s, seq);
	struct ent *e;

	if (i < 0)
		return -ENOENT;
	e = ent_at(s, (size_t)i);
	if (e->state != ENT_TAKEN)
		return -EINVAL;
	mark_done(s, e);
	ST_ADD(s, released_entries, 1);
	ring_trim(s);
	return 0;
}

int
nm_spool_untake(struct nm_spool *s, uint64_t seq)
{
	long i = ring_find(s, seq);
	struct ent *e;

	if (i < 0)
		return -ENOENT;
	e = ent_at(s, (size_t)i);
	if (e->state != ENT_TAKEN)
		return -EINVAL;
	e->state = ENT_WAITING;
	ST_SUB(s, taken, 1);
	if ((size_t)i < s->rd)
		s->rd = (size_t)i;
	return 0;
}

void
nm_spool_untake_all(struct nm_spool *s)
{
	size_t i;

	for (i = 0; i < s->count; i++) {
		struct ent *e = ent_at(s, i);

		if (e->state == ENT_TAKEN) {
			e->state = ENT_WAITING;
			ST_SUB(s, taken, 1);
			if (i < s->rd)
				s->rd = i;
		}
	}
}

int
nm_spool_reject(struct nm_spool *s, uint64_t seq)
{
	long i = ring_find(s, seq);
	struct ent *e;
	int ret;

	if (i < 0)
		return -ENOENT;
	e = ent_at(s, (size_t)i);
	ret = nm_spool_untake(s, seq);
	if (ret != 0)
		return ret;
	ST_ADD(s, rejected, 1);
	if (e->rejects < UINT16_MAX)
		e->rejects++;
	return e->rejects;
}

/* Open (create) the dead-letter file for appending; it starts with the segment magic. */
static int
dead_open(struct nm_spool *s)
{
	char err[256];
	int fd;

	if (s->deadfd >= 0)
		return 0;
	fd = open_file(s, NM_SPOOL_DEAD_NAME, O_WRONLY | O_CREAT, err, sizeof(err));
	if (fd < 0) {
		fprintf(stderr, "kafka spool: %s\n", err);
		return fd;
	}
	if (s->dead_size < NM_SPOOL_SEG_HDR_LEN) {
		/* New, or torn before its magic was whole: start it again. */
		if (ftruncate(fd, 0) != 0 ||
		    pwrite(fd, SEG_MAGIC, NM_SPOOL_SEG_HDR_LEN, 0) != NM_SPOOL_SEG_HDR_LEN) {
			int ret = errno != 0 ? -errno : -EIO;

			close(fd);
			return ret;
		}
		s->dead_size = NM_SPOOL_SEG_HDR_LEN;
	}
	s->deadfd = fd;
	return 0;
}

int
nm_spool_dead_letter(struct nm_spool *s, uint64_t seq, struct nm_spool_meta *m)
{
	long i = ring_find(s, seq);
	uint64_t need;
	struct ent *e;
	ssize_t w;
	int ret;

	if (i < 0)
		return -ENOENT;
	e = ent_at(s, (size_t)i);
	if (e->state == ENT_DONE)
		return -EINVAL;
	m->seq = e->seq;
	m->rows = e->rows;
	m->key = e->key;
	m->packets = e->packets;
	m->bytes = e->bytes;
	need = NM_SPOOL_HDR_LEN + (uint64_t)e->len;
	ret = read_entry(s, e);
	if (ret == 0) {
		struct nm_spool_meta chk;
		uint32_t n;

		if (!hdr_check(s->buf, need, &chk, &n) || chk.seq != e->seq)
			ret = -EBADMSG;
	}
	if (ret == -EBADMSG || ret == -ENODATA) {
		/* Not the entry that was written any more: a corrupt one, counted as such. */
		note_corrupt(s, e->seg, e->off, need, e->rows, false);
		ret = -EBADMSG;
	} else if (ret == 0) {
		if (s->dead_size + need > s->segment_bytes)
			ret = -ENOSPC;
		else
			ret = dead_open(s);
		if (ret == 0) {
			/* The entry as it was written, header and CRC included: readable as a
			 * segment. */
			w = pwrite(s->deadfd, s->buf, need, (off_t)s->dead_size);
			if (w != (ssize_t)need) {
				ret = w < 0 ? -errno : -ENOSPC;
				(void)ftruncate(s->deadfd, (off_t)s->dead_size);
				ST_ADD(s, write_errors, 1);
			} else {
				s->dead_size += need;
				s->dirty = true;
				__atomic_store_n(&s->st.dead_bytes, s->dead_size, __ATOMIC_RELAXED);
				ST_ADD(s, dead_entries, 1);
				ST_ADD(s, dead_rows, e->rows);
			}
		}
	}
	/* Whatever became of it, it leaves the spool: it must not block the entries behind it. */
	mark_done(s, e);
	ring_trim(s);
	return ret;
}

int
nm_spool_sync(struct nm_spool *s)
{
	int ret = 0;

	if (s == NULL)
		return 0;
	if (s->wfd >= 0 && s->dirty && fdatasync(s->wfd) != 0) {
		ret = -errno;
		sync_failed(s, "fdatasync of the open segment", errno);
	}
	if (s->commitfd >= 0 && fdatasync(s->commitfd) != 0) {
		if (ret == 0)
			ret = -errno;
		sync_failed(s, "fdatasync of the commit file", errno);
	}
	if (s->deadfd >= 0 && fdatasync(s->deadfd) != 0) {
		if (ret == 0)
			ret = -errno;
		sync_failed(s, "fdatasync of the dead-letter file", errno);
	}
	s->dirty = false;
	return ret;
}

void
nm_spool_get_stats(const struct nm_spool *s, struct nm_spool_stats *out)
{
	if (s == NULL) {
		memset(out, 0, sizeof(*out));
		return;
	}
	out->disk_bytes = ST_GET(s, disk_bytes);
	out->entries = ST_GET(s, entries);
	out->rows = ST_GET(s, rows);
	out->payload_bytes = ST_GET(s, payload_bytes);
	out->taken = ST_GET(s, taken);
	out->recovered_entries = ST_GET(s, recovered_entries);
	out->recovered_rows = ST_GET(s, recovered_rows);
	out->appended_entries = ST_GET(s, appended_entries);
	out->appended_rows = ST_GET(s, appended_rows);
	out->released_entries = ST_GET(s, released_entries);
	out->full = ST_GET(s, full);
	out->write_errors = ST_GET(s, write_errors);
	out->corrupt = ST_GET(s, corrupt);
	out->corrupt_bytes = ST_GET(s, corrupt_bytes);
	out->corrupt_rows = ST_GET(s, corrupt_rows);
	out->corrupt_rows_open = ST_GET(s, corrupt_rows_open);
	out->sync_errors = ST_GET(s, sync_errors);
	out->rejected = ST_GET(s, rejected);
	out->dead_entries = ST_GET(s, dead_entries);
	out->dead_rows = ST_GET(s, dead_rows);
	out->dead_bytes = ST_GET(s, dead_bytes);
}

const char *
nm_spool_dir(const struct nm_spool *s)
{
	return s != NULL ? s->dir : "";
}

void
nm_spool_close(struct nm_spool *s)
{
	if (s == NULL)
		return;
	(void)nm_spool_sync(s);
	if (s->wfd >= 0)
		close(s->wfd);
	if (s->rfd >= 0)
		close(s->rfd);
	if (s->commitfd >= 0)
		close(s->commitfd);
	if (s->deadfd >= 0)
		close(s->deadfd);
	if (s->lockfd >= 0)
		close(s->lockfd); /* releases the flock */
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s->segs);
	free(s->ring);
	free(s->buf);
	free(s->dir);
	free(s);
}
