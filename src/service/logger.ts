/** What the service logs through (pino in `tufoci serve`; anything with these methods in tests). */
export interface Logger {
  /** Optional: events worth seeing only when looking for them (e.g. a peer's head announcement). */
  debug?(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}
