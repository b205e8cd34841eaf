import type { Address, Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";

/**
 * What the page keeps in the browser, in IndexedDB (per origin):
 *
 * - the session key: a secp256k1 key that signs vouchers, so that paying needs no wallet prompt.
 *   WebCrypto cannot hold secp256k1 keys, so they cannot be made non-extractable themselves;
 *   instead the key is stored encrypted (AES-GCM) under a WebCrypto key generated with
 *   `extractable: false`, which IndexedDB stores as a CryptoKey whose bytes no script can read.
 *   Script running on this origin can still ask the browser to decrypt, so the spending limit
 *   (the channel's deposit) is what bounds the loss; the key holds no funds;
 * - per offer (network, contract, payee, token): the channel it opened and the amounts needed to
 *   sign the next voucher, written before each voucher is sent so a reload never reuses an amount.
 */

const DB_NAME = "paychan";
const KEYS = "keys";
const CHANNELS = "channels";
const SESSION_KEY = "session";

/** The browser's record of one channel. */
export interface StoredChannel {
  /** See {@link offerKey}. */
  readonly offer: string;
  readonly channelId: Hex;
  readonly payer: Address;
  /** The deposit: the spending limit the buyer approved, atomic units (decimal string). */
  deposit: string;
  /** Highest cumulative amount ever signed on this channel. */
  signedMax: string;
  /** Highest charged total the server reported. */
  chargedKnown: string;
}

interface StoredKey {
  readonly wrappingKey: CryptoKey;
  readonly iv: Uint8Array<ArrayBuffer>;
  readonly ciphertext: ArrayBuffer;
}

/** The key under which a channel is stored: what makes two offers payable by the same channel. */
export function offerKey(network: string, contract: string, payee: string, asset: string): string {
  return [network, contract, payee, asset].join("|").toLowerCase();
}

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}

/** The page's IndexedDB database. */
export class SessionVault {
  private constructor(private readonly db: IDBDatabase) {}

  static async open(): Promise<SessionVault> {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      req.result.createObjectStore(KEYS);
      req.result.createObjectStore(CHANNELS, { keyPath: "offer" });
    };
    return new SessionVault(await request(req));
  }

  /** The session key, created (and stored encrypted) on first use. */
  async sessionKey(): Promise<PrivateKeyAccount> {
    const stored = await request(
      this.db.transaction(KEYS, "readonly").objectStore(KEYS).get(SESSION_KEY) as IDBRequest<StoredKey | undefined>,
    );
    if (stored) {
      const plain = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: stored.iv },
        stored.wrappingKey,
        stored.ciphertext,
      );
      return privateKeyToAccount(new TextDecoder().decode(plain) as Hex);
    }
    const privateKey = generatePrivateKey();
    const wrappingKey = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, [
      "encrypt",
      "decrypt",
    ]);
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const ciphertext = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv },
      wrappingKey,
      new TextEncoder().encode(privateKey),
    );
    const tx = this.db.transaction(KEYS, "readwrite");
    // add, not put: a second tab creating a key at the same moment fails here instead of replacing one in use.
    tx.objectStore(KEYS).add({ wrappingKey, iv, ciphertext } satisfies StoredKey, SESSION_KEY);
    try {
      await done(tx);
    } catch {
      return this.sessionKey();
    }
    return privateKeyToAccount(privateKey);
  }

  async channel(offer: string): Promise<StoredChannel | undefined> {
    return request(
      this.db.transaction(CHANNELS, "readonly").objectStore(CHANNELS).get(offer) as IDBRequest<
        StoredChannel | undefined
      >,
    );
  }

  /** Writes a channel's record; resolves once the write is committed. */
  async saveChannel(channel: StoredChannel): Promise<void> {
    // Strict: the write reaches the disk before the voucher it reserves is sent.
    const tx = this.db.transaction(CHANNELS, "readwrite", { durability: "strict" });
    tx.objectStore(CHANNELS).put(channel);
    await done(tx);
  }
}
