/**
 * Child process for the archive crash test: opens a volume and brings its archive sink up
 * to date (catchUp), printing `U <chunksDone>` after every stored chunk object and
 * `OK <results json>` at the end, until the parent kills it with SIGKILL (or it finishes).
 * Args: volumeDir dir|s3 storePathOrEndpoint bucket chunkBytes
 */
import { openVolume } from '@headstart/volume';
import { createArchiveSink, openDirectoryStore, openS3Store } from '@headstart/archive';

const [volumeDir, kind, where, bucket, chunkBytes] = process.argv.slice(2);
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
const out = (line: string) => process.stdout.write(line + '\n');

const volume = await openVolume(volumeDir);
const store =
  kind === 'dir'
    ? await openDirectoryStore({ path: where })
    : openS3Store({ bucket, endpoint: where, prefix: 'crash', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
const sink = await createArchiveSink({ store, source: volume, chunkBytes: Number(chunkBytes), concurrency: 2, onProgress: (p) => out(`U ${p.chunksDone}`) });
const results = await sink.catchUp(volume);
out(`OK ${JSON.stringify(results)}`);
await volume.shutdown();
await store.close();
