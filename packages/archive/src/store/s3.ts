/**
 * The S3 backend, through the AWS SDK v3 (so AWS S3, MinIO, Ceph RGW and any other
 * S3-compatible store speak the same code). Keys live under an optional prefix inside one
 * bucket. Credentials come the usual ways: explicit options, else the SDK's default chain
 * (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws profiles, SSO, instance metadata).
 *
 * The SDK's own retries are off (maxAttempts 1): the archive retries every backend the
 * same way (retry.ts), so faults are handled — and tested — once. Flexible checksums are
 * off too: every archive object already carries xxh64 checksums that are verified on read,
 * and older S3-compatible servers reject the newer checksum headers.
 */
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { HeadstartError } from '@headstart/errors';
import { aborted, checkKey, checkPrefix } from './keys';
import type { ObjectInfo, ObjectStore, StoreCallOptions } from './types';

export interface S3StoreOptions {
  readonly bucket: string;
  /** Key prefix inside the bucket ("" or e.g. "site-a/archive"); no leading or trailing slash needed. */
  readonly prefix?: string;
  /** For S3-compatible stores: "http://127.0.0.1:9000". Omit for AWS. */
  readonly endpoint?: string;
  /** Default: AWS_REGION, else us-east-1. */
  readonly region?: string;
  /** Path-style URLs (bucket in the path): needed by most S3-compatible servers. Default: true when an endpoint is given. */
  readonly forcePathStyle?: boolean;
  /** Omit to use the SDK's default credential chain. */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string };
  /** Per-request time limit, ms (a timeout is a retryable ARCHIVE_STORE_IO). Default 30 s. */
  readonly requestTimeoutMs?: number;
  /** Connection set-up time limit, ms. Default 5 s. */
  readonly connectTimeoutMs?: number;
}

export function openS3Store(options: S3StoreOptions): ObjectStore {
  if (typeof options?.bucket !== 'string' || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(options.bucket)) {
    throw new HeadstartError('ARCHIVE_CONFIG', `s3 store: bad bucket name ${JSON.stringify(options?.bucket)}`);
  }
  const prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
  if (prefix !== '') checkKey(prefix);
  const client = new S3Client({
    region: options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
    forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
    ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
    maxAttempts: 1,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { requestTimeout: options.requestTimeoutMs ?? 30_000, connectionTimeout: options.connectTimeoutMs ?? 5_000, throwOnRequestTimeout: true },
  });
  return new S3Store(client, options.bucket, prefix === '' ? '' : prefix + '/');
}

class S3Store implements ObjectStore {
  readonly description: string;
  readonly localReads = false;
  #closed = false;

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly prefix: string,
  ) {
    this.description = `s3://${bucket}/${prefix}`;
  }

  async put(key: string, data: Uint8Array, options?: StoreCallOptions): Promise<void> {
    this.#open();
    checkKey(key);
    aborted(options?.signal, `put ${key}`);
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, Body: data, ContentLength: data.length, ContentType: 'application/octet-stream' }), { abortSignal: options?.signal });
    } catch (err) {
      throw mapS3Error(err, `put ${this.description}${key}`, options?.signal);
    }
  }

  async get(key: string, options?: StoreCallOptions): Promise<Buffer> {
    this.#open();
    checkKey(key);
    aborted(options?.signal, `get ${key}`);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }), { abortSignal: options?.signal });
      if (out.Body === undefined) throw new HeadstartError('ARCHIVE_STORE_IO', `get ${this.description}${key}: empty response body`);
      const bytes = Buffer.from(await out.Body.transformToByteArray());
      if (out.ContentLength !== undefined && out.ContentLength !== bytes.length) {
        throw new HeadstartError('ARCHIVE_STORE_IO', `get ${this.description}${key}: got ${bytes.length} of ${out.ContentLength} bytes`);
      }
      return bytes;
    } catch (err) {
      throw mapS3Error(err, `get ${this.description}${key}`, options?.signal);
    }
  }

  async head(key: string, options?: StoreCallOptions): Promise<ObjectInfo | null> {
    this.#open();
    checkKey(key);
    aborted(options?.signal, `head ${key}`);
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }), { abortSignal: options?.signal });
      return { key, size: out.ContentLength ?? 0 };
    } catch (err) {
      const mapped = mapS3Error(err, `head ${this.description}${key}`, options?.signal);
      if (mapped.code === 'ARCHIVE_NOT_FOUND') return null;
      throw mapped;
    }
  }

  async list(prefix: string, options?: StoreCallOptions): Promise<ObjectInfo[]> {
    this.#open();
    checkPrefix(prefix);
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      aborted(options?.signal, `list ${prefix}`);
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token }), { abortSignal: options?.signal });
      } catch (err) {
        throw mapS3Error(err, `list ${this.description}${prefix}`, options?.signal);
      }
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined || !o.Key.startsWith(this.prefix)) continue;
        out.push({ key: o.Key.slice(this.prefix.length), size: o.Size ?? 0 });
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string, options?: StoreCallOptions): Promise<void> {
    this.#open();
    checkKey(key);
    aborted(options?.signal, `delete ${key}`);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }), { abortSignal: options?.signal });
    } catch (err) {
      const mapped = mapS3Error(err, `delete ${this.description}${key}`, options?.signal);
      if (mapped.code !== 'ARCHIVE_NOT_FOUND') throw mapped;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.client.destroy();
  }

  #open(): void {
    if (this.#closed) throw new HeadstartError('ARCHIVE_CONFIG', `${this.description}: store is closed`);
  }
}

const NOT_FOUND = new Set(['NoSuchKey', 'NotFound']);
// CredentialsProviderError: the SDK found no credentials at all (no request was sent, so no
// HTTP status): retrying cannot fix it, the operator must provide them.
const DENIED = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'NoSuchBucket', 'AllAccessDisabled', 'InvalidBucketName', 'ExpiredToken', 'InvalidToken', 'CredentialsProviderError']);

/** Sorts an SDK or network failure into the store's error contract (see types.ts). */
export function mapS3Error(err: unknown, what: string, signal?: AbortSignal): HeadstartError {
  if (err instanceof HeadstartError) return err;
  const e = err as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = e?.$metadata?.httpStatusCode;
  const name = e?.name ?? '';
  if (name === 'AbortError' || signal?.aborted) return new HeadstartError('ARCHIVE_ABORTED', `${what}: cancelled`, { cause: err });
  if (NOT_FOUND.has(name) || (status === 404 && name !== 'NoSuchBucket')) return new HeadstartError('ARCHIVE_NOT_FOUND', `${what}: no such object`, { cause: err });
  if (DENIED.has(name) || status === 401 || status === 403) return new HeadstartError('ARCHIVE_STORE_DENIED', `${what}: ${name} ${e?.message ?? ''}`.trim(), { cause: err });
  // Throttling (429, 503 SlowDown), server faults (5xx), timeouts and network errors: retry.
  if (status === undefined || status === 429 || status >= 500 || name === 'TimeoutError' || name === 'RequestTimeout' || name === 'SlowDown') {
    return new HeadstartError('ARCHIVE_STORE_IO', `${what}: ${name || e?.code || 'network error'} ${e?.message ?? ''}`.trim(), { cause: err });
  }
  return new HeadstartError('ARCHIVE_STORE_DENIED', `${what}: HTTP ${status} ${name} ${e?.message ?? ''}`.trim(), { cause: err });
}
