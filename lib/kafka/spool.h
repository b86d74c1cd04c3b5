/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_SPOOL_H
#define NM_SPOOL_H

/*
 * The on-disk spool of the Kafka sink: encoded Kafka message payloads that librdkafka could not
 * take (queue full) or could not deliver (timed out, purged at shutdown) wait here, in order,
 * until they are replayed; a spool left by a crash is replayed by the next engine.
 *
 * Layout of the spool directory:
 *   lock                  flock()ed by the engine that owns the spool (a second one is refused)
 *   commit                the position up to which entries are delivered (segment, offset, CRC)
 *   NNNNNNNNNNNNNNNN.seg  segments, written sequentially, numbered upwards; a new one is started
 *                         when the current one reaches segment_bytes
 *
 * A segment starts with the 8 bytes "NMSPOOL1", then entries. An entry is a 48-byte header
 * (little endian) followed by the payload:
 *   0 magic u32 0x52534d4e ("NMSR")   4 payload length u32    8 sequence u64 (never reused)
 *  16 rows u32                       20 key u32 (exporter group)
 *  24 sum of the rows' Packets u64   32 sum of the rows' Bytes u64
 *  40 flags u32 (0)                  44 CRC32C of bytes 0..43 and of the payload
 * At open every segment is read and each entry checked; a torn or corrupt entry (bad magic,
 * length beyond the file, CRC mismatch) is counted and skipped: reading resumes at the next
 * offset that holds a valid entry, or at the end of the segment.
 *
 * Durability (the fsync policy): entries are written with one write(2) each, so a killed engine
 * (kill -9) loses none -- they are in the kernel's page cache. nm_spool_sync() fdatasync()s the
 * open segment and the commit file; the sink calls it at most once a second while the spool is
 * being written, when a segment is full, and at drain/close. A power failure can therefore lose
 * the last second of spooled entries; what it tears is caught by the CRC at the next open.
 * The commit file is rewritten (pwrite, no fsync) whenever delivered entries are released, so
 * after a crash at most the entries acknowledged since the last release are replayed twice.
 *
 * Entries are taken in order (nm_spool_take) to be produced; a taken entry is released
 * (nm_spool_release) when Kafka acknowledged it, or returned (nm_spool_untake) when its
 * delivery failed, and is then taken again first. Released entries at the head of the spool are
 * forgotten; a segment whose entries are all released is deleted.
 *
 * Threading: one thread calls everything except nm_spool_get_stats(), which any thread may call
 * (the counters are relaxed atomics).
 */

#include <stddef.h>
#include <stdint.h>

#define NM_SPOOL_HDR_LEN 48
#define NM_SPOOL_SEG_HDR_LEN 8
#define NM_SPOOL_MAX_PAYLOAD (1u << 30)

struct nm_spool_params {
	const char *dir;	/* created (one level) if missing */
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
	uint64_t released_entries; /* released since open */
	uint64_t full;		   /* appends refused because max_bytes would be exceeded */
	uint64_t write_errors;	   /* appends that failed on I/O (the entry is not in the spool) */
	uint64_t corrupt;	   /* corrupt/torn regions skipped (at open or when read) */
	uint64_t corrupt_bytes;	   /* bytes in them */
};

struct nm_spool;

/*
 * Open (or create) the spool in p->dir, take its lock and index every valid entry left there.
 * NULL with errno set and a message in err (the directory, the file and the cause).
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

/* fdatasync the open segment and the commit file. 0 or -errno. */
int nm_spool_sync(struct nm_spool *s);

void nm_spool_get_stats(const struct nm_spool *s, struct nm_spool_stats *out);

const char *nm_spool_dir(const struct nm_spool *s);

/* Sync and close; entries not released stay on disk for the next open. NULL is a no-op. */
void nm_spool_close(struct nm_spool *s);

/* CRC32C (Castagnoli) of buf, continuing from crc (0 to start). */
uint32_t nm_crc32c(uint32_t crc, const void *buf, size_t len);

#endif /* NM_SPOOL_H */
