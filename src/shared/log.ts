import pino from "pino";

/**
 * Structured logs through pino: one JSON object per line on stderr (or any writable), with
 * `level`, `ts` (ISO 8601), the event's fields and `msg`. Lines are written synchronously, so a
 * crash loses none. Fields named like secrets (private keys, passwords, authorization headers and
 * cookies) are written as "[redacted]".
 *
 * The level comes from `PAYCHAN_LOG_LEVEL` (debug, info, warn, error, silent; default info).
 * Per-request lines are logged at debug: callers on the hot path check {@link Logger.enabled}
 * first so that a disabled level costs one comparison and builds no field object.
 */

/** Log levels, most verbose first; "silent" disables logging. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

const LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error", "silent"];

/** Environment variable holding the log level. */
export const LOG_LEVEL_ENV = "PAYCHAN_LOG_LEVEL";

/** Fields attached to a log line; bigints are written as decimal strings, errors as {type, message, stack}. */
export type LogFields = Readonly<Record<string, unknown>>;

/** Where lines go: anything with a `write(string)` (process.stderr, a test buffer). */
export interface LogSink {
  write(line: string): unknown;
}

export interface Logger {
  /** The active level. */
  readonly level: LogLevel;
  /** Whether a line at `level` would be written; check it before building fields on hot paths. */
  enabled(level: Exclude<LogLevel, "silent">): boolean;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger writing to the same sink with `fields` added to every line. */
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  /** Default: {@link LOG_LEVEL_ENV}, else "info". */
  readonly level?: LogLevel;
  /** Default: stderr (stdout stays free for command output). */
  readonly sink?: LogSink;
  /** Fields on every line, e.g. { component: "proxy" }. */
  readonly fields?: LogFields;
}

/**
 * Fields whose values are secrets. NOTE: redacted at the top level of a line (its fields and its
 * logger's) and in a `headers` object. Explicit paths only: each wildcard path ("*.privateKey")
 * cost about 1 µs per written line in pino's redaction.
 */
const SECRET_FIELDS = [
  "privateKey",
  "payeeKey",
  "relayerKey",
  "senderKey",
  "secrets",
  "password",
  "mnemonic",
  "authorization",
  "cookie",
  "PAYCHAN_PAYEE_PRIVATE_KEY",
  "PAYCHAN_RELAYER_PRIVATE_KEY",
  "PAYCHAN_SETTLER_PRIVATE_KEY",
  "PAYCHAN_PAYER_PRIVATE_KEY",
  "PAYCHAN_KEYSTORE_PASSWORD",
  "DEPLOYER_PRIVATE_KEY",
];
const SECRET_HEADERS = ["authorization", "cookie", '["proxy-authorization"]', '["set-cookie"]'];
const REDACT_PATHS = [
  ...SECRET_FIELDS,
  ...SECRET_HEADERS.map((header) => (header.startsWith("[") ? `headers${header}` : `headers.${header}`)),
];

/** The line's own keys, which fields cannot override, so every line parses the same way. */
const RESERVED = new Set(["level", "ts", "msg"]);

/** Whether `value` names a log level. */
export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === "string" && (LEVELS as readonly string[]).includes(value);
}

/**
 * Reads the level from the environment. An unknown value falls back to "info" rather than
 * failing start-up over a log setting; the logger says so in its first line.
 */
export function levelFromEnv(env: NodeJS.ProcessEnv = process.env): { level: LogLevel; invalid?: string } {
  const raw = env[LOG_LEVEL_ENV]?.trim().toLowerCase();
  if (raw === undefined || raw === "") return { level: "info" };
  return isLogLevel(raw) ? { level: raw } : { level: "info", invalid: raw };
}

/** Creates a JSON-lines logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  let level = options.level;
  let invalid: string | undefined;
  if (level === undefined) ({ level, invalid } = levelFromEnv());
  const destination = options.sink ?? stderr();
  const root = pino(
    {
      level,
      base: undefined,
      timestamp: () => `,"ts":"${new Date().toISOString()}"`,
      formatters: {
        level: (label) => ({ level: label }),
        bindings: (bindings) => jsonSafe(bindings ?? {}),
        log: jsonSafe,
      },
      // jsonSafe serializes errors wherever they are, not only under `err`; pino's `err` serializer
      // would then see a plain object, so it passes values through.
      serializers: { err: (value: unknown) => value },
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    },
    destination,
  );
  const logger = new PinoLogger(options.fields ? root.child(options.fields) : root, level);
  if (invalid !== undefined) logger.warn("unknown log level, using info", { [LOG_LEVEL_ENV]: invalid });
  return logger;
}

/** Standard error, written synchronously; a closed stderr (EPIPE) is not worth crashing the process for. */
function stderr(): pino.DestinationStream {
  const destination = pino.destination({ fd: 2, sync: true });
  destination.on("error", () => undefined);
  return destination;
}

/** The {@link Logger} interface over a pino logger: (message, fields) rather than pino's (fields, message). */
class PinoLogger implements Logger {
  constructor(
    private readonly pino: pino.Logger,
    readonly level: LogLevel,
  ) {}

  enabled(level: Exclude<LogLevel, "silent">): boolean {
    return this.pino.isLevelEnabled(level);
  }

  debug(msg: string, fields?: LogFields): void {
    this.pino.debug(fields ?? {}, msg);
  }

  info(msg: string, fields?: LogFields): void {
    this.pino.info(fields ?? {}, msg);
  }

  warn(msg: string, fields?: LogFields): void {
    this.pino.warn(fields ?? {}, msg);
  }

  error(msg: string, fields?: LogFields): void {
    this.pino.error(fields ?? {}, msg);
  }

  child(fields: LogFields): Logger {
    return new PinoLogger(this.pino.child(fields), this.level);
  }
}

/** A logger that writes nothing (tests, library use). */
export const silentLogger: Logger = createLogger({ level: "silent", sink: { write: () => undefined } });

/**
 * The fields as JSON can carry them: bigints (token amounts beyond 2^53) as decimal strings rather
 * than pino's bare numbers, which JSON readers round; errors anywhere through pino's error
 * serializer (type, message, stack, cause, code); reserved keys dropped. Runs only for lines
 * that are written, and copies only what it changes.
 */
function jsonSafe(fields: Record<string, unknown>): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(fields)) {
    if (RESERVED.has(key)) {
      copy ??= { ...fields };
      delete copy[key];
      continue;
    }
    const safe = toJsonValue(fields[key], 0);
    if (safe !== fields[key]) (copy ??= { ...fields })[key] = safe;
  }
  return copy ?? fields;
}

function toJsonValue(value: unknown, depth: number): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) return pino.stdSerializers.err(value);
  // Deeper structures are rare in log fields; JSON.stringify's own limits apply below this.
  if (depth >= 4 || typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) {
    const items = value.map((item) => toJsonValue(item, depth + 1));
    return items.some((item, i) => item !== value[i]) ? items : value;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  const record = value as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(record)) {
    const safe = toJsonValue(record[key], depth + 1);
    if (safe !== record[key]) (copy ??= { ...record })[key] = safe;
  }
  return copy ?? value;
}
