/** The export registry: name -> device, changed at runtime by addExport/removeExport. */
import { HeadstartError } from '@headstart/errors';
import type { BlockDevice } from '@headstart/volume';
import type { ExportOptions, ExportSummary, WriteRecorder } from './types';

/** One served export and the connections currently in its transmission phase. */
export interface ExportEntry {
  readonly name: string;
  readonly device: BlockDevice;
  readonly readOnly: boolean;
  readonly description: string;
  readonly recorder: WriteRecorder | undefined;
  readonly multiConn: boolean;
  /** Set once removeExport starts; clients can no longer select it. */
  removed: boolean;
  readonly connections: Set<{ shutdown(reason: string): Promise<void> }>;
}

const MAX_NAME_BYTES = 4096;

export class ExportRegistry {
  private readonly byName = new Map<string, ExportEntry>();

  add(name: string, device: BlockDevice, options: ExportOptions = {}): ExportEntry {
    if (typeof name !== 'string' || Buffer.byteLength(name) > MAX_NAME_BYTES || name.includes('\0')) {
      throw new HeadstartError('CONFIG_INVALID', `export name must be a string of at most ${MAX_NAME_BYTES} bytes without NUL`);
    }
    if (this.byName.has(name)) throw new HeadstartError('NBD_EXPORT_EXISTS', `an export named "${name}" is already served`);
    const entry: ExportEntry = {
      name,
      device,
      readOnly: options.readOnly === true,
      description: options.description ?? '',
      recorder: options.recorder,
      multiConn: options.multiConn !== false,
      removed: false,
      connections: new Set(),
    };
    this.byName.set(name, entry);
    return entry;
  }

  get(name: string): ExportEntry | undefined {
    return this.byName.get(name);
  }

  /** Unlists the export and returns it (its connections are the caller's to close). */
  take(name: string): ExportEntry | undefined {
    const entry = this.byName.get(name);
    if (!entry) return undefined;
    this.byName.delete(name);
    entry.removed = true;
    return entry;
  }

  all(): ExportEntry[] {
    return [...this.byName.values()];
  }

  summaries(): ExportSummary[] {
    return this.all().map((e) => ({ name: e.name, size: e.device.size, readOnly: isReadOnly(e), connections: e.connections.size }));
  }
}

/** An export refuses writes if it was added read-only or its device is (a replica's volume). */
export function isReadOnly(entry: ExportEntry): boolean {
  return entry.readOnly || entry.device.readOnly;
}
