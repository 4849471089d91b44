// Deltas arrive batched (~25 ms) but not aligned to frames: several can land in
// one frame. This joins them and hands the text to the DOM once per animation
// frame, so a fast stream costs one text append per frame at most.

export interface FrameScheduler {
  request(callback: () => void): number;
  cancel(handle: number): void;
}

export const animationFrames: FrameScheduler = {
  request: (cb) => requestAnimationFrame(() => cb()),
  cancel: (handle) => cancelAnimationFrame(handle),
};

export interface DeltaCoalescer {
  push(text: string): void;
  /** Writes anything pending now (stream ended), without waiting for a frame. */
  flush(): void;
  /** Drops anything pending and the scheduled frame. */
  cancel(): void;
  readonly pending: boolean;
}

export function createDeltaCoalescer(
  write: (text: string) => void,
  scheduler: FrameScheduler = animationFrames,
): DeltaCoalescer {
  let chunks: string[] = [];
  let handle: number | null = null;

  const run = (): void => {
    handle = null;
    if (chunks.length === 0) return;
    const text = chunks.length === 1 ? chunks[0]! : chunks.join("");
    chunks = [];
    write(text);
  };

  return {
    push(text) {
      if (text === "") return;
      chunks.push(text);
      if (handle === null) handle = scheduler.request(run);
    },
    flush() {
      if (handle !== null) {
        scheduler.cancel(handle);
        handle = null;
      }
      run();
    },
    cancel() {
      if (handle !== null) scheduler.cancel(handle);
      handle = null;
      chunks = [];
    },
    get pending() {
      return chunks.length > 0;
    },
  };
}
