/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_SPOOL_H
#define NM_SPOOL_H

/*
 * The on-disk spool of the Kafka sink: encoded Kafka message payloads that librdkafka could not
 * take (queue full) or could not deliver (timed out, purged at shutdown) wait here, in order,
 * until they are replayed; a spool left by a crash is replayed by the next engine.
 *
 * Layout of the spool directory (owned by the engine's user, mode 0700: created so when missing,
 * refused otherwise; every file in it is opened with O_NOFOLLOW and must be a regular file, so a
 * symbolic link planted there is refused, never followed):
 *   lock                  flock()ed by the engine that owns the spool (a second one is refused)
 *   commit                the position up to which entries are delivered (segment, offset, CRC)
 *   NNNNNNNNNNNNNNNN.seg  segments, written sequentially, numbered upwards; a new one is started
 *                         when the current one reaches segment_bytes
 *   dead-letter.seg       entries Kafka refused for good (nm_spool_dead_letter), in the segment
 *                         format, never replayed; at most segment_bytes, kept for an operator
 *
 * A segment starts with the 8 bytes "NMSPOOL1", then entries. An entry is a 48-byte header
 * (little endian) followed by the payload:
 *   0 magic u32 0x52534d4e ("NMSR")   4 payload length u32    8 sequence u64 (never reused)
 *  16 rows u32                       20 key u32 (exporter group)
 *  24 sum of the rows' Packets u64   32 sum of the rows' Bytes u64
 *  40 flags u32 (0)                  44 CRC32C of bytes 0..43 and of the payload
 * At open every segment is read and each entry checked; a torn or corrupt entry (bad magic,
 * length beyond the file, CRC mismatch) is counted and skipped: reading resumes at the next
 * offset that holds a valid entry, or at the end of the segment. Its rows are lost: counted in
 * corrupt_rows as far as a whole header with the entry magic claims them (a region without one
 * counts in corrupt only).
 *
 * Durability (the fsync policy): entries are written with one write(2) each, so a killed engine
 * (kill -9) loses no entry that nm_spool_append() returned 0 for -- it is in the kernel's page
 * cache. nm_spool_sync() fdatasync()s the open segment, the commit file and the dead-letter
 * file; the sink calls it at most once a second while the spool is being written, when a
 * segment is full, and at drain/close. A power failure can therefore lose the last second of
 * spooled entries; what it tears is caught by the CRC at the next open. A failed fsync,
 * fdatasync or commit write is counted in sync_errors and said on stderr, never ignored.
 * The commit file is rewritten (pwrite, no fsync) whenever delivered entries are released, so
 * after a crash at most the entries acknowledged since the last release are replayed twice.
 *
 * Entries are taken in order (nm_spool_take) to be produced; a taken entry is released
 * (nm_spool_release) when Kafka acknowledged it, or returned (nm_spool_untake) when its
 * delivery failed, and is then taken again first; nm_spool_reject() returns it the same way
 * and counts a permanent refusal, and nm_spool_dead_letter() moves it out of the spool for good
 * (the caller decides after how many refusals), so one message Kafka will never take cannot
 * block the head of the spool. Released entries at the head of the spool are forgotten; a
 * segment whose entries are all released is deleted.
 *
 * Threading: one thread calls everything except nm_spool_get_stats(), which any thread may call
 * (the counters are relaxed atomics).
 */

#include <stddef.h>
#include <stdint.h>

#define NM_SPOOL_HDR_LEN 48
#define NM_SPOOL_SEG_HDR_LEN 8
#define NM_SPOOL_MAX_PAYLOAD (1u << 30)
#define NM_SPOOL_DEAD_NAME "dead-letter.seg"

struct nm_spool_params {
	const char *dir;	/* created (one level, mode 0700) if missing */
	uint64_t max_bytes;	/* segment files may not grow beyond this in total */
	uint64_t segment_bytes; /* start a new segment past this size; 0: max_bytes / 8, at most
				 * 64 MiB, at least 64 KiB */
};

/* What an entry carries besides its payload. */
struct nm_spool_meta {
	uint64_t seq; /* set by nm_spool_append / nm_spool_take */
	uint32_t rows;
	uint32_t key;
	uint64_t packets;
	uint64_t bytes;
};

struct nm_spool_stats {
	uint64_t disk_bytes;	    /* size of the segment files now */
	uint64_t entries;	    /* entries not yet released (waiting or taken) */
	uint64_t rows;		    /* rows in those entries */
	uint64_t payload_bytes;	    /* payload bytes of those entries */
	uint64_t taken;		    /* entries taken and not yet released/returned */
	uint64_t recovered_entries; /* valid entries found at open (left by an earlier engine) */
	uint64_t recovered_rows;
	uint64_t appended_entries; /* appended since open */
	uint64_t appended_rows;
	uint64_t released_entries;  /* released since open */
	uint64_t full;		    /* appends refused because max_bytes would be exceeded */
	uint64_t write_errors;	    /* appends that failed on I/O (the entry is not in the spool) */
	uint64_t corrupt;	    /* corrupt/torn regions skipped (at open or when read) */
	uint64_t corrupt_bytes;	    /* bytes in them */
	uint64_t corrupt_rows;	    /* rows their headers claimed (lost) */
	uint64_t corrupt_rows_open; /* of those, found at open (never in rows/recovered_rows) */
	uint64_t sync_errors;	    /* failed fsync/fdatasync/commit writes */
	uint64_t rejected;	    /* nm_spool_reject() calls */
	uint64_t dead_entries;	    /* moved to the dead-letter file since open */
	uint64_t dead_rows;
	uint64_t dead_bytes; /* size of the dead-letter file now (earlier runs' entries included) */
};

struct nm_spool;

/*
 * Open (or create) the spool in p->dir, take its lock and index every valid entry left there.
 * NULL with errno set and a message in err (the directory, the file and the cause): -EPERM when
 * the directory is not owned by the effective uid or its mode is not 0700 (the message names
 * the path, the owner and the mode); ELOOP/EINVAL when a file in it is a symbolic link or not
 * a regular file.
 */
struct nm_spool *nm_spool_open(const struct nm_spool_params *p, char *err, size_t errlen);

/*
 * Append one entry (m->seq is assigned and written back). 0; -ENOSPC when the spool would grow
 * beyond max_bytes; -EMSGSIZE when len > NM_SPOOL_MAX_PAYLOAD; another -errno on I/O failure
 * (counted in write_errors; the segment is cut back to its last good entry).
 */
int nm_spool_append(struct nm_spool *s, struct nm_spool_meta *m, const void *payload, uint32_t len);

/*
 * Take the oldest entry that is neither taken nor released: its metadata into m, a pointer to its
 * payload (valid until the next call of nm_spool_take) into *payload, its length into *len.
 * 1 when an entry was taken, 0 when none waits, -EBUSY when max_taken entries are taken already,
 * -errno on a read failure. An entry whose payload no longer matches its CRC is counted corrupt,
 * released and skipped.
 */
int nm_spool_take(struct nm_spool *s, unsigned int max_taken, struct nm_spool_meta *m,
		  const void **payload, uint32_t *len);

/* The taken entry seq was delivered: forget it (its segment goes when it holds no other). */
int nm_spool_release(struct nm_spool *s, uint64_t seq);

/* The taken entry seq was not delivered: it waits again, before every later entry. */
int nm_spool_untake(struct nm_spool *s, uint64_t seq);

/* Return every taken entry (as nm_spool_untake). */
void nm_spool_untake_all(struct nm_spool *s);

/*
 * The taken entry seq was refused by Kafka for good (a permanent error, not a broker that is
 * away): return it as nm_spool_untake() does and count the refusal. Returns how many times it
 * was refused since open (>= 1), or -errno.
 */
int nm_spool_reject(struct nm_spool *s, uint64_t seq);

/*
 * Move the entry seq (taken or waiting) out of the spool into the dead-letter file, as it was
 * written (header and CRC), and fill m with its metadata. The entry leaves the spool whatever
 * the outcome: 0 when it is in the dead-letter file; -ENOSPC when that file would grow beyond
 * segment_bytes; -EBADMSG when the entry no longer matches its CRC (counted corrupt); another
 * -errno on I/O failure. Anything but 0 means its rows are lost (the caller counts them).
 */
int nm_spool_dead_letter(struct nm_spool *s, uint64_t seq, struct nm_spool_meta *m);

/* fdatasync the open segment, the commit file and the dead-letter file. 0 or -errno (each
 * failure counted in sync_errors and said on stderr). */
int nm_spool_sync(struct nm_spool *s);

void nm_spool_get_stats(const struct nm_spool *s, struct nm_spool_stats *out);

const char *nm_spool_dir(const struct nm_spool *s);

/* Sync and close; entries not released stay on disk for the next open. NULL is a no-op. */
void nm_spool_close(struct nm_spool *s);

/* CRC32C (Castagnoli) of buf, continuing from crc (0 to start). */
uint32_t nm_crc32c(uint32_t crc, const void *buf, size_t len);

#endif /* NM_SPOOL_H */
