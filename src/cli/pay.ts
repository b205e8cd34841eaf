import path from "node:path";
import {
  createPayingFetch,
  fileStateStore,
  InsufficientDepositError,
  loadOrCreateSessionKey,
  offerKey,
  openChannel,
  PaymentLimitError,
  termsFromOffer,
  type ClientStateStore,
} from "../client";
import { decodeHeader, PAYMENT_REQUIRED_HEADER, SCHEME, type PaymentRequired } from "../protocol/headers";
import { toAtomic } from "../protocol/price";
import { isReasonCode } from "../protocol/reasons";
import {
  CLIENT_DIR_ENV,
  KEYSTORE_PASSWORD_ENV,
  loadAccount,
  parseCommandArgs,
  PAYER_KEY_ENV,
  reportError,
  stateDir,
} from "./common";
import type { Command } from "./index";
import { adviseRefusal, type RefusalContext } from "./refusal";

export { CLIENT_DIR_ENV, PAYER_KEY_ENV, stateDir } from "./common";

const USAGE = `Usage: paychan pay <url> [options]

Sends one HTTP request and pays it through a payment channel if the server answers 402.
The response body goes to stdout; what was paid goes to stderr.

Options:
  -X, --method <method>        HTTP method (default GET)
  -d, --data <text>            request body
  -H, --header <name: value>   extra request header (repeatable)
  --max-per-request <amount>   refuse (without signing) a price above this (default "$0.01")
  --max-total <amount>         refuse once this command would pay more (default "$1")
  --deposit <amount>           if no channel is known for the server's terms, open one gaslessly
                               through the server's relay with this deposit, signed by the
                               funding key in ${PAYER_KEY_ENV} (or --keystore)
  --keystore <file>            encrypted JSON keystore of the funding wallet, for --deposit
                               (password from ${KEYSTORE_PASSWORD_ENV}, or prompted on a terminal)
  --withdraw-delay <seconds>   withdraw delay of that channel (default: the server's minimum)
  --state <dir>                session key and client state (default $${CLIENT_DIR_ENV} or ./.paychan)
  --decimals <n>               token decimals for "$" amounts (default 6)
  -h, --help

Amounts are "$<dollars>" (e.g. "$0.001") or atomic units ("1000").
A refused payment prints its reason code, what it means and the command that fixes it (top up,
open a new channel, cancel a withdrawal) on stderr; the server's JSON answer still goes to stdout.
Exit codes: 0 paid or free 2xx answer, 1 other answers or errors, 2 usage, 3 refused by a spend
limit (nothing signed), 4 payment refused: by the server (a reason code), or before signing because
the channel's deposit cannot cover the price.
`;

/** Exit code of a refused payment. */
export const EXIT_REFUSED = 4;

/** `paychan pay <url>`. */
export const command: Command = {
  summary: "send one request, paying it through a channel on 402",
  usage: USAGE,
  async run(args) {
    const parsed = parseCommandArgs(
      "pay",
      USAGE,
      args,
      {
        method: { type: "string", short: "X" },
        data: { type: "string", short: "d" },
        header: { type: "string", short: "H", multiple: true },
        "max-per-request": { type: "string" },
        "max-total": { type: "string" },
        deposit: { type: "string" },
        "withdraw-delay": { type: "string" },
        state: { type: "string" },
        keystore: { type: "string" },
        decimals: { type: "string" },
      },
      { positionals: true },
    );
    if (typeof parsed === "number") return parsed;
    const { values, positionals } = parsed;
    if (positionals.length !== 1) {
      process.stderr.write(`paychan pay: expected exactly one URL\n\n${USAGE}`);
      return 2;
    }
    const decimals = Number(values.decimals ?? 6);
    let maxPerRequest: bigint, maxTotal: bigint, deposit: bigint | undefined;
    try {
      maxPerRequest = toAtomic(values["max-per-request"] ?? "$0.01", decimals);
      maxTotal = toAtomic(values["max-total"] ?? "$1", decimals);
      deposit = values.deposit !== undefined ? toAtomic(values.deposit, decimals) : undefined;
    } catch (error) {
      process.stderr.write(`paychan pay: ${(error as Error).message}\n`);
      return 2;
    }
    const headers = new Headers();
    for (const h of values.header ?? []) {
      const at = h.indexOf(":");
      if (at <= 0) {
        process.stderr.write(`paychan pay: header "${h}" must look like "name: value"\n`);
        return 2;
      }
      headers.append(h.slice(0, at).trim(), h.slice(at + 1).trim());
    }

    const dir = stateDir(values.state);
    const session = loadOrCreateSessionKey(path.join(dir, "session.key"));
    const store = fileStateStore(path.join(dir, "state.json"));
    const url = positionals[0];
    const stateFlag = values.state !== undefined ? ` --state ${values.state}` : "";
    const pay = createPayingFetch(fetch, {
      sessionAccount: session,
      maxPerRequest,
      maxTotal,
      store,
      channel: async (offer, url) => {
        if (deposit === undefined || (!process.env[PAYER_KEY_ENV] && values.keystore === undefined)) {
          throw new Error(
            `no channel is known for ${offer.payTo} on ${offer.network}: open one with "paychan open", ` +
              `or pass --deposit with the funding key in ${PAYER_KEY_ENV} (or --keystore)`,
          );
        }
        const opened = await openChannel({
          terms: termsFromOffer(offer, url),
          funding: { kind: "relay", payer: await loadAccount({ keystore: values.keystore }) },
          signer: session.address,
          amount: deposit,
          ...(values["withdraw-delay"] ? { withdrawDelay: Number(values["withdraw-delay"]) } : {}),
        });
        process.stderr.write(`opened channel 0x${opened.channelId.toString(16)} (tx ${opened.txHash})\n`);
        return opened;
      },
    });
    try {
      const response = await pay(url, {
        method: values.method ?? (values.data !== undefined ? "POST" : "GET"),
        headers,
        ...(values.data !== undefined ? { body: values.data } : {}),
      });
      process.stdout.write(Buffer.from(await response.arrayBuffer()));
      const p = response.payment;
      if (p) {
        process.stderr.write(
          `paid ${p.charge} (voucher ${p.amount} on channel 0x${p.channelId.toString(16)}, charged total ` +
            `${p.chargedTotal}), receipt ${p.receiptValid ? "verified" : "INVALID"}\n`,
        );
        return response.ok ? 0 : 1;
      }
      const refused = refusalOf(response, url, store, stateFlag);
      if (refused) {
        process.stderr.write(
          `paychan pay: payment refused (HTTP ${response.status} ${refused.reason}): ${refused.meaning}\n` +
            `  fix: ${refused.fix}\n`,
        );
        return EXIT_REFUSED;
      }
      process.stderr.write(`HTTP ${response.status}, nothing paid\n`);
      return response.ok ? 0 : 1;
    } catch (error) {
      if (error instanceof InsufficientDepositError) {
        const advice = adviseRefusal("amount_exceeds_deposit", {
          url,
          offer: error.offer,
          channelId: error.channelId,
          price: error.price,
          available: error.available,
          stateFlag,
        });
        process.stderr.write(`paychan pay: ${error.message}\n  fix: ${advice.fix}\n`);
        return EXIT_REFUSED;
      }
      if (error instanceof PaymentLimitError) {
        process.stderr.write(`paychan pay: ${error.message}\n`);
        return 3;
      }
      return reportError("pay", error, { url });
    }
  },
};

/**
 * The reason, meaning and fix of a refused payment: an answer carrying PAYMENT-REQUIRED with a
 * reason code (or a bare 402 after paying). Undefined for any other answer.
 */
function refusalOf(
  response: Response,
  url: string,
  store: ClientStateStore,
  stateFlag: string,
): ({ reason: string } & ReturnType<typeof adviseRefusal>) | undefined {
  const header = response.headers.get(PAYMENT_REQUIRED_HEADER);
  if (!header) return undefined;
  let required: PaymentRequired;
  try {
    required = decodeHeader<PaymentRequired>(header);
  } catch {
    return undefined;
  }
  const reason = required.error ?? "payment_required";
  if (!isReasonCode(reason)) return undefined;
  const offer = required.accepts?.find((o) => o.scheme === SCHEME);
  if (!offer) return undefined;
  const known = store.load().offers[offerKey(offer.network, offer.extra.contract, offer.payTo, offer.asset)];
  const view = offer.extra.channelState;
  const channelId = view ? BigInt(view.channelId) : known !== undefined ? BigInt(known) : undefined;
  const ctx: RefusalContext = {
    url,
    offer,
    price: BigInt(offer.amount),
    ...(channelId !== undefined ? { channelId } : {}),
    ...(view ? { view } : {}),
    stateFlag,
  };
  return { reason, ...adviseRefusal(reason, ctx) };
}
