import { HttpRequestError, TimeoutError } from "viem";

/**
 * RPC transport failures (the node is down, unreachable, slow, or its HTTP front refuses the
 * request) in a few words, for messages a human reads: "connection refused", not a stack of
 * wrapped errors.
 */

/** Node's socket error codes, as a person would say them. */
const SOCKET_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: "connection refused: nothing listens there",
  ECONNRESET: "the connection was reset",
  ENOTFOUND: "the host name does not resolve",
  EAI_AGAIN: "the host name lookup failed",
  ETIMEDOUT: "the connection timed out",
  EHOSTUNREACH: "the host is unreachable",
  ENETUNREACH: "the network is unreachable",
  EPROTO: "the TLS handshake failed",
  UND_ERR_CONNECT_TIMEOUT: "the connection timed out",
  UND_ERR_SOCKET: "the connection was closed",
  DEPTH_ZERO_SELF_SIGNED_CERT: "its TLS certificate is self-signed",
  CERT_HAS_EXPIRED: "its TLS certificate has expired",
};

/** `error` and its causes (AggregateError members included), outermost first. */
function chain(error: unknown): unknown[] {
  const seen: unknown[] = [];
  const queue = [error];
  while (queue.length > 0 && seen.length < 16) {
    const current = queue.shift();
    if (current === undefined || current === null || seen.includes(current)) continue;
    seen.push(current);
    if (current instanceof AggregateError) queue.push(...current.errors);
    if (typeof current === "object" && "cause" in current) queue.push((current as { cause?: unknown }).cause);
  }
  return seen;
}

/**
 * What failed in transport, in a few words ("connection refused: nothing listens there", "no
 * answer within the timeout", "HTTP 401"), or undefined when `error` is no transport failure (a
 * revert, a JSON-RPC error answer, a programming fault).
 */
export function transportFailure(error: unknown): string | undefined {
  const errors = chain(error);
  for (const e of errors) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && SOCKET_ERRORS[code] !== undefined) return SOCKET_ERRORS[code];
  }
  for (const e of errors) {
    if (e instanceof TimeoutError) return "no answer within the timeout";
    if (e instanceof HttpRequestError && e.status !== undefined) return `the server answered HTTP ${e.status}`;
  }
  // undici's "fetch failed" wraps the real reason (e.g. "bad port"); say that one.
  const fetchFailed = errors.findIndex((e) => e instanceof TypeError && e.message === "fetch failed");
  if (fetchFailed >= 0) {
    const inner = errors.slice(fetchFailed + 1).find((e): e is Error => e instanceof Error);
    return inner ? `the request failed (${inner.message})` : "the request failed";
  }
  return undefined;
}

/** The URL a viem transport error names, if any. */
export function failedUrl(error: unknown): string | undefined {
  for (const e of chain(error)) {
    if ((e instanceof HttpRequestError || e instanceof TimeoutError) && e.url) return e.url;
  }
  return undefined;
}

/**
 * An RPC URL as it may be shown: without a trailing slash, and with what looks like a secret
 * masked. Providers put API keys in the path (`/v2/<key>`) or the query; a message on a terminal
 * or in a log must not carry them.
 */
export function displayUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url;
  }
  const path = parsed.pathname
    .split("/")
    .map((segment) => (segment.length >= 16 ? "***" : segment))
    .join("/")
    .replace(/\/$/, "");
  const credentials = parsed.username || parsed.password ? "***@" : "";
  return `${parsed.protocol}//${credentials}${parsed.host}${path}${parsed.search ? "?***" : ""}`;
}
