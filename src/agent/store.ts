import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { OpenFiles } from '../content/open-files.ts';
import { pieceLength, pieceOffset, type SignedManifest } from '../content/manifest.ts';
import type { PieceSource } from '../transfer/piece-source.ts';
import { encodeRanges } from '../transfer/piece-ranges.ts';

// The agent's local store (S1.6): one folder per content with its signed manifest,
// the data file (pre-sized, pieces written in place as they are verified) and the
// download journal (the record of which pieces were verified, from which source).
// While a content is still arriving the agent already serves the pieces it has.

export interface StoredContent {
  manifest: SignedManifest;
  have: Set<number>;
  /** `have` as ranges, kept until the next piece arrives (it goes out with every piece served). */
  ranges?: string;
}

export class AgentStore {
  private readonly contents = new Map<string, StoredContent>();
  private readonly files = new OpenFiles(64);

  constructor(readonly dir: string) {
    mkdirSync(path.join(dir, 'contents'), { recursive: true });
    for (const id of readdirSync(path.join(dir, 'contents'))) this.load(id);
  }

  paths(contentId: string) {
    const base = path.join(this.dir, 'contents', contentId);
    return { base, manifest: path.join(base, 'manifest.json'), data: path.join(base, 'data'), journal: path.join(base, 'journal') };
  }

  /** Registers a content about to be fetched (its manifest already checked by the caller). */
  begin(contentId: string, manifest: SignedManifest): StoredContent {
    const p = this.paths(contentId);
    mkdirSync(p.base, { recursive: true });
    if (!existsSync(p.manifest)) writeFileSync(p.manifest, JSON.stringify(manifest));
    let entry = this.contents.get(contentId);
    if (!entry) {
      entry = { manifest, have: new Set() };
      this.contents.set(contentId, entry);
    }
    return entry;
  }

  /** A piece was verified and written: serve it from now on. */
  markPiece(contentId: string, index: number) {
    const c = this.contents.get(contentId);
    if (!c || c.have.has(index)) return;
    c.have.add(index);
    c.ranges = undefined;
  }

  get(contentId: string): StoredContent | undefined {
    return this.contents.get(contentId);
  }

  isComplete(contentId: string): boolean {
    const c = this.contents.get(contentId);
    return !!c && c.have.size === c.manifest.body.pieces.length;
  }

  list(): { id: string; manifest: SignedManifest; complete: boolean; pieces: number[] }[] {
    return [...this.contents.entries()].map(([id, c]) => ({ id, manifest: c.manifest, complete: this.isComplete(id), pieces: [...c.have].sort((a, b) => a - b) }));
  }

  pieceSource(): PieceSource {
    return {
      manifest: async (id) => this.contents.get(id)?.manifest ?? null,
      have: async (id) => {
        const c = this.contents.get(id);
        return c ? [...c.have].sort((a, b) => a - b) : null;
      },
      haveRanges: (id) => {
        const c = this.contents.get(id);
        if (!c || c.have.size === c.manifest.body.pieces.length) return null;
        return (c.ranges ??= encodeRanges(c.have));
      },
      openPiece: async (id, index) => {
        const c = this.contents.get(id);
        if (!c || !c.have.has(index)) return null;
        const data = this.paths(id).data;
        const start = pieceOffset(c.manifest.body, index);
        return { length: pieceLength(c.manifest.body, index), read: async (offset, into) => (await this.files.read(data, into, start + offset)) ?? 0 };
      },
    };
  }

  /** Deletes a content's folder (an edge evicting it). Not while it is being fetched: the caller checks. */
  remove(contentId: string) {
    const p = this.paths(contentId);
    this.contents.delete(contentId);
    this.files.forget(p.data);
    rmSync(p.base, { recursive: true, force: true });
  }

  close() {
    this.files.closeAll();
  }

  /** Reads a content folder left by an earlier run: the journal names the verified pieces. */
  private load(contentId: string) {
    const p = this.paths(contentId);
    if (!existsSync(p.manifest)) return;
    const manifest = JSON.parse(readFileSync(p.manifest, 'utf8')) as SignedManifest;
    const have = new Set<number>();
    if (existsSync(p.journal)) {
      for (const line of readFileSync(p.journal, 'utf8').split('\n')) {
        try {
          const entry = JSON.parse(line);
          if (entry.t === 'piece') have.add(entry.i);
        } catch {}
      }
    }
    this.contents.set(contentId, { manifest, have });
  }
}
