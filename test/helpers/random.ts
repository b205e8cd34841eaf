import { getAddress, toHex, type Address } from "viem";

/** mulberry32: a tiny seeded PRNG, so every run checks the same inputs. Returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface BelowOptions {
  /**
   * "biased" (the default): mostly full width, 15% of any width, 5% within 255 of the maximum.
   * "uniform": the full-width draw alone.
   */
  readonly shape?: "biased" | "uniform";
  /** How many bits each draw contributes, most significant first (default 32). */
  readonly chunkBits?: number;
}

/**
 * Random values from one seeded stream. Every helper is a plain closure (no `this`), so the object
 * can be destructured: `const { int, pick } = createRandom(SEED)`.
 */
export interface Random {
  /** The next float in [0, 1). */
  readonly next: () => number;
  /** An integer in [0, below). */
  readonly int: (below: number) => number;
  /** True with probability p. */
  readonly chance: (p: number) => boolean;
  readonly pick: <T>(items: readonly T[]) => T;
  /** A random integer below 2^bits; see BelowOptions for the shapes. */
  readonly below: (bits: number, options?: BelowOptions) => bigint;
  /** `length` uniformly random bytes. */
  readonly bytes: (length: number) => Uint8Array;
  /** A checksummed address from a biased 160-bit value (so zero-heavy and 0xff…-heavy ones occur). */
  readonly address: () => Address;
  /** Fisher–Yates shuffle in place; returns `items`. */
  readonly shuffle: <T>(items: T[]) => T[];
}

export function createRandom(seed: number): Random {
  const next = mulberry32(seed);
  const int = (below: number): number => Math.floor(next() * below);
  const below = (bits: number, { shape = "biased", chunkBits = 32 }: BelowOptions = {}): bigint => {
    const scale = 2 ** chunkBits;
    let value = 0n;
    for (let i = 0; i < bits; i += chunkBits) value = (value << BigInt(chunkBits)) | BigInt(Math.floor(next() * scale));
    value &= (1n << BigInt(bits)) - 1n;
    if (shape === "uniform") return value;
    const roll = next();
    if (roll < 0.15) return value >> BigInt(int(bits)); // any width
    if (roll < 0.2) return (1n << BigInt(bits)) - 1n - (value & 0xffn); // near the maximum
    return value;
  };
  return {
    next,
    int,
    chance: (p) => next() < p,
    pick: (items) => items[int(items.length)],
    below,
    bytes: (length) => Uint8Array.from({ length }, () => int(256)),
    address: () => getAddress(toHex(below(160), { size: 20 })),
    shuffle: (items) => {
      for (let i = items.length - 1; i > 0; i--) {
        const j = int(i + 1);
        [items[i], items[j]] = [items[j], items[i]];
      }
      return items;
    },
  };
}
