/** Named defaults of the archive, each with its reason. */

/** 4 MiB chunks: large enough that a restore is a few big sequential reads per GiB and an
 * S3 PUT's fixed cost is small, small enough that a full-chunk fold (compaction, mutate)
 * stays cheap. DESIGN.md "The archive". */
export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;

/** Fold a chunk's delta chain into one full object once it would pass this many links:
 * a restore reads every link of a chain, so chains must stay short, while each fold
 * re-uploads the whole chunk once. 8 keeps restores within a few objects per chunk and the
 * fold cost at most one chunk per 8 changes to it. */
export const DEFAULT_MAX_CHAIN = 8;

/** Parallel uploads / reads: enough to hide S3 round trips (~tens of ms) behind each
 * other, few enough that chunk buffers (2 x 4 MiB each) stay small in memory. */
export const DEFAULT_CONCURRENCY = 8;

/** The sink name the archive uses on a volume. */
export const DEFAULT_SINK_NAME = 'archive';
