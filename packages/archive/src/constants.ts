/** Named defaults of the archive, each with its reason. */

/** 4 MiB chunks: large enough that a restore is a few big sequential reads per GiB and an
 * S3 PUT's fixed cost is small, small enough that a full-chunk fold (compaction, mutate)
 * stays cheap. DESIGN.md "The archive". */
export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;

/** Fold a chunk's delta chain into one full object once it would pass this many objects.
 * A restore reads every link of a chain (in parallel), so chains must stay bounded, while
 * each fold re-uploads the whole chunk once: with sparse writes (1% of blocks per point) a
 * fold every 16 points costs about 6 MiB of deltas' worth per 4 MiB chunk, every 8 points
 * about 12. A chain is also folded as soon as its deltas add up to a whole chunk (see
 * sink.ts), which bounds a restore's read amplification at 2x and makes each fold cost no
 * more than the deltas it replaces. */
export const DEFAULT_MAX_CHAIN = 16;

/** Parallel uploads / reads: enough to hide S3 round trips (~tens of ms) behind each
 * other, few enough that chunk buffers (2 x 4 MiB each) stay small in memory. */
export const DEFAULT_CONCURRENCY = 8;

/** The sink name the archive uses on a volume. */
export const DEFAULT_SINK_NAME = 'archive';
