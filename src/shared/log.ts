/**
 * Structured logs: one JSON object per line on stderr (or any writable), with `ts`, `level`, `msg`
 * and the event's fields flattened in. Nothing is buffered, so a crash loses no line.
 *
 * The level comes from `PAYCHAN_LOG_LEVEL` (debug, info, warn, error, silent; default info).
 * Per-request lines are logged at debug: callers on the hot path check {@link Logger.enabled}
 * first so that a disabled level costs one comparison and builds no field object.
 */

/** Log levels, most verbose first; "silent" disables logging. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

const RANK: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** Environment variable holding the log level. */
export const LOG_LEVEL_ENV = "PAYCHAN_LOG_LEVEL";

/** Fields attached to a log line; bigints are written as decimal strings, errors as {name, message, stack}. */
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
  /** Default: process.stderr (stdout stays free for command output). */
  readonly sink?: LogSink;
  /** Fields on every line, e.g. { component: "proxy" }. */
  readonly fields?: LogFields;
}

/** Whether `value` names a log level. */
export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === "string" && Object.prototype.hasOwnProperty.call(RANK, value);
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
  const logger = new JsonLogger(RANK[level], level, options.sink ?? process.stderr, options.fields ?? {});
  if (invalid !== undefined) logger.warn("unknown log level, using info", { [LOG_LEVEL_ENV]: invalid });
  return logger;
}

class JsonLogger implements Logger {
  constructor(
    private readonly rank: number,
    readonly level: LogLevel,
    private readonly sink: LogSink,
    private readonly base: LogFields,
  ) {}

  enabled(level: Exclude<LogLevel, "silent">): boolean {
    return RANK[level] >= this.rank;
  }

  debug(msg: string, fields?: LogFields): void {
    if (RANK.debug >= this.rank) this.write("debug", msg, fields);
  }

  info(msg: string, fields?: LogFields): void {
    if (RANK.info >= this.rank) this.write("info", msg, fields);
  }

  warn(msg: string, fields?: LogFields): void {
    if (RANK.warn >= this.rank) this.write("warn", msg, fields);
  }

  error(msg: string, fields?: LogFields): void {
    if (RANK.error >= this.rank) this.write("error", msg, fields);
  }

  child(fields: LogFields): Logger {
    return new JsonLogger(this.rank, this.level, this.sink, { ...this.base, ...fields });
  }

  private write(level: string, msg: string, fields: LogFields | undefined): void {
    // ts/level/msg first and not overridable by fields, so every line parses the same way.
    const line: Record<string, unknown> = { ts: new Date().toISOString(), level, msg };
    for (const source of [this.base, fields]) {
      if (!source) continue;
      for (const key of Object.keys(source)) if (!(key in line)) line[key] = source[key];
    }
    let text: string;
    try {
      text = JSON.stringify(line, replacer);
    } catch {
      // Circular structures and throwing getters must not take the server down with them.
      text = JSON.stringify({ ts: line.ts, level, msg, logError: "fields not serializable" });
    }
    try {
      this.sink.write(text + "\n");
    } catch {
      // A closed or full sink is not worth crashing for.
    }
  }
}

/** A logger that writes nothing (tests, library use). */
// Defined after JsonLogger: a class is not usable before its declaration runs.
export const silentLogger: Logger = createLogger({ level: "silent", sink: { write: () => undefined } });

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) {
    const out: Record<string, unknown> = { name: value.name, message: value.message };
    if (value.stack) out.stack = value.stack;
    const code = (value as { code?: unknown }).code;
    if (code !== undefined) out.code = code;
    return out;
  }
  return value;
}
