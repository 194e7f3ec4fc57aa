/** What fn throws (undefined when it returns): for asserting on error fields. */
export function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}
