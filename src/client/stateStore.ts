import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import path from "node:path";
import type { SignedQuote } from "../protocol/quote";
import type { SignedReceipt } from "../protocol/receipt";

/**
 * The paying client's durable state: per channel, the highest amount signed (`signedMax`), the
 * highest charged total the server reported (`chargedKnown`) and the receipts received; and which
 * channel serves which offer. A restarted client that loads this file never signs an amount it
 * already signed (every new amount is above `signedMax`) and resumes from `chargedKnown`.
 */

/** What the client remembers about one channel. */
export interface ChannelState {
  /** 0x-hex channel id. */
  readonly channelId: string;
  /** Highest voucher amount signed, decimal atomic units. */
  signedMax: string;
  /** Highest chargedTotal seen in a PAYMENT-RESPONSE or a 402 channel view, decimal. */
  chargedKnown: string;
  /**
   * Highest deposit seen (at opening, in paid answers, 402 channel views and top-ups), decimal;
   * absent until known. No voucher is signed above it.
   */
  deposit?: string;
  /** Paid responses with a valid receipt. */
  receipts: number;
  /** The last valid receipt, if any. */
  lastReceipt?: SignedReceipt;
  /** The quote the server bound to this channel for its life (`lockRate: "channel"`), if any. */
  quote?: SignedQuote;
}

/** The whole persisted document. */
export interface ClientState {
  readonly version: 1;
  /** Keyed by {@link channelKey}. */
  readonly channels: Record<string, ChannelState>;
  /** Offer key ({@link offerKey}) → 0x-hex channel id used to pay that offer. */
  readonly offers: Record<string, string>;
}

/** Where the client keeps its state. */
export interface ClientStateStore {
  /** The current state (mutate through the returned objects, then call {@link save}). */
  load(): ClientState;
  /** Makes the current state durable. Synchronous, so a voucher is never sent before its amount is recorded. */
  save(): void;
}

/** Key of one channel: network, contract and id (a channel id is only unique per contract). */
export function channelKey(network: string, contract: string, channelId: bigint): string {
  return `${network}:${contract.toLowerCase()}:0x${channelId.toString(16)}`;
}

/** Key of an offer's channel terms: network, contract, payee and token. */
export function offerKey(network: string, contract: string, payTo: string, asset: string): string {
  return `${network}:${contract.toLowerCase()}:${payTo.toLowerCase()}:${asset.toLowerCase()}`;
}

function emptyState(): ClientState {
  return { version: 1, channels: {}, offers: {} };
}

/** A store that forgets everything when the process ends. */
export function memoryStateStore(): ClientStateStore {
  const state = emptyState();
  return { load: () => state, save: () => undefined };
}

/** Options of {@link fileStateStore}. */
export interface FileStateStoreOptions {
  /** fsync the file and its directory on every save (survives power loss). Default true. */
  readonly fsync?: boolean;
}

/**
 * A JSON file, rewritten atomically on every save: the new content goes to a temporary file in
 * the same directory, is flushed, then renamed over the old one, so a crash leaves either the old
 * or the new state, never a torn file. A missing file starts empty; an unreadable one throws
 * (silently starting over could re-sign amounts already used).
 */
export function fileStateStore(file: string, options: FileStateStoreOptions = {}): ClientStateStore {
  const fsync = options.fsync ?? true;
  let state: ClientState | undefined;
  const dir = path.dirname(path.resolve(file));
  const tmp = `${file}.${process.pid}.tmp`;
  return {
    load() {
      if (state) return state;
      let text: string | undefined;
      try {
        text = readFileSync(file, "utf8");
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      }
      if (text === undefined) {
        state = emptyState();
      } else {
        const parsed = JSON.parse(text) as ClientState;
        if (parsed.version !== 1 || typeof parsed.channels !== "object" || typeof parsed.offers !== "object") {
          throw new Error(`${file}: not a paychan client state file (version 1)`);
        }
        state = parsed;
      }
      return state;
    },
    save() {
      const current = this.load();
      mkdirSync(dir, { recursive: true });
      const fd = openSync(tmp, "w", 0o600);
      try {
        writeSync(fd, JSON.stringify(current, null, 1));
        if (fsync) fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, file);
      if (fsync) {
        try {
          const dfd = openSync(dir, "r");
          try {
            fsyncSync(dfd);
          } finally {
            closeSync(dfd);
          }
        } catch {
          // Directories cannot be opened for fsync on every platform; the rename is still atomic.
        }
      }
    },
  };
}
