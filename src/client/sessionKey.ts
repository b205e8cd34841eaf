import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";

/**
 * Loads the session key kept in `file` (0x-hex private key), or generates one and writes it with
 * mode 0600. The session key signs vouchers only: it holds no funds, and a channel names it as its
 * signer, so losing it only means opening a new channel (the deposit comes back through a
 * withdrawal by the funding wallet).
 */
export function loadOrCreateSessionKey(file: string): PrivateKeyAccount {
  let text: string | undefined;
  try {
    text = readFileSync(file, "utf8").trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  if (text !== undefined) {
    if (!/^0x[0-9a-fA-F]{64}$/.test(text)) throw new Error(`${file}: not a 0x-hex private key`);
    return privateKeyToAccount(text as Hex);
  }
  const key = generatePrivateKey();
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileSync(file, `${key}\n`, { mode: 0o600, flag: "wx" });
  chmodSync(file, 0o600);
  return privateKeyToAccount(key);
}
