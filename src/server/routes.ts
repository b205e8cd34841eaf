import type { Pricing } from "../protocol/headers";
import { toAtomic } from "../protocol/price";
import type { MeterUnit, RoutePrice, RouteTable } from "../shared/config";

/** A metered route's terms: each block of `blockUnits` units costs `blockUnits × unitPrice`. */
export interface ResolvedMeter {
  readonly unit: MeterUnit;
  readonly unitPrice: bigint;
  readonly blockUnits: number;
  readonly voucherTimeoutMs: number;
}

/** A route's resolved terms. */
export interface ResolvedRoute {
  /** The price (for a metered route, of one block: blockUnits × unitPrice, charged "upto"). */
  readonly price: bigint;
  readonly pricing: Pricing;
  readonly description?: string;
  readonly meter?: ResolvedMeter;
}

/** Defaults of a route's `meter` (as in the configuration file). */
export const METER_DEFAULTS = { unit: "chunk", blockUnits: 100, voucherTimeoutMs: 10_000 } as const;

interface CompiledRoute {
  readonly method: string | undefined;
  readonly path: string;
  readonly prefix: boolean;
  readonly resolved: ResolvedRoute | null;
}

/**
 * Compiles a route table once; {@link RouteMatcher.match} then resolves a request in a few
 * string comparisons. Exact paths win over prefixes, longer prefixes over shorter ones, and a
 * method-specific route over an any-method one.
 *
 * NOTE: matching is deliberately looser than a typical router (case-insensitive, trailing slashes
 * ignored, HEAD priced as GET) so that no spelling the application would serve slips through
 * unpriced; an odd spelling is at worst charged.
 */
export class RouteMatcher {
  private readonly routes: CompiledRoute[];

  constructor(table: RouteTable, decimals: number) {
    this.routes = Object.entries(table).map(([key, value]) => compile(key, value, decimals));
    this.routes.sort(
      (a, b) =>
        Number(a.prefix) - Number(b.prefix) ||
        b.path.length - a.path.length ||
        Number(a.method === undefined) - Number(b.method === undefined),
    );
  }

  /**
   * The terms for a request: a resolved route, null for a free route, or undefined when no route
   * matches (the caller decides whether unmatched paths are free or refused).
   */
  match(method: string, path: string): ResolvedRoute | null | undefined {
    const verb = method.toUpperCase() === "HEAD" ? "GET" : method.toUpperCase();
    path = normalizePath(path);
    for (const route of this.routes) {
      if (route.method !== undefined && route.method !== verb) continue;
      if (route.prefix ? path === route.path || path.startsWith(`${route.path}/`) : path === route.path) {
        return route.resolved;
      }
    }
    return undefined;
  }
}

function compile(key: string, value: RoutePrice, decimals: number): CompiledRoute {
  const match = /^(?:([A-Z]+)\s+)?(\/\S*)$/.exec(key.trim());
  if (!match) throw new Error(`route "${key}" must look like "GET /path", "/path" or "/path/*"`);
  const [, method, rawPath] = match;
  const prefix = rawPath.endsWith("/*");
  const path = normalizePath(prefix ? rawPath.slice(0, -2) : rawPath);
  if (value === null) return { method, path, prefix, resolved: null };
  const spec = typeof value === "object" ? value : { price: value };
  const price = toAtomic(spec.price, decimals);
  const description = spec.description ? { description: spec.description } : {};
  if (typeof value === "object" && value.meter) {
    const meter: ResolvedMeter = {
      unit: value.meter.unit ?? METER_DEFAULTS.unit,
      unitPrice: price,
      blockUnits: value.meter.blockUnits ?? METER_DEFAULTS.blockUnits,
      voucherTimeoutMs: value.meter.voucherTimeoutMs ?? METER_DEFAULTS.voucherTimeoutMs,
    };
    if (!Number.isSafeInteger(meter.blockUnits) || meter.blockUnits < 1) {
      throw new Error(`route "${key}": meter.blockUnits must be a whole number ≥ 1`);
    }
    const block = price * BigInt(meter.blockUnits);
    return { method, path, prefix, resolved: { price: block, pricing: "upto", ...description, meter } };
  }
  return { method, path, prefix, resolved: { price, pricing: spec.pricing ?? "fixed", ...description } };
}

/** Lower case, without trailing slashes ("/" stays "/"). */
function normalizePath(path: string): string {
  const lower = path.toLowerCase();
  return lower.length > 1 && lower.endsWith("/") ? lower.replace(/\/+$/, "") || "/" : lower;
}
