// A fixed-size ring of (time, value) samples that answers "the last N
// minutes". Memory stays constant however long the dashboard is open.

export interface Sample {
  t: number;
  v: number;
}

export class TimeSeries {
  private readonly times: Float64Array;
  private readonly values: Float64Array;
  private start = 0;
  private count = 0;

  /**
   * @param windowMs how much history `points()` returns
   * @param capacity most samples kept; size it for the window at the poll rate
   */
  constructor(
    readonly windowMs: number,
    readonly capacity: number,
  ) {
    if (capacity < 1) throw new RangeError("capacity must be at least 1");
    this.times = new Float64Array(capacity);
    this.values = new Float64Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  push(t: number, v: number): void {
    // A clock that went backwards (suspend/resume, NTP) would make the window
    // lie; start over rather than draw time running backwards.
    const last = this.latest();
    if (last && t < last.t) this.clear();
    const at = (this.start + this.count) % this.capacity;
    this.times[at] = t;
    this.values[at] = v;
    if (this.count < this.capacity) this.count++;
    else this.start = (this.start + 1) % this.capacity;
    this.prune(t);
  }

  latest(): Sample | null {
    if (this.count === 0) return null;
    const at = (this.start + this.count - 1) % this.capacity;
    return { t: this.times[at]!, v: this.values[at]! };
  }

  /** Samples within the window ending at `now` (default: the newest sample), oldest first. */
  points(now?: number): Sample[] {
    const end = now ?? this.latest()?.t ?? 0;
    const from = end - this.windowMs;
    const out: Sample[] = [];
    for (let i = 0; i < this.count; i++) {
      const at = (this.start + i) % this.capacity;
      const t = this.times[at]!;
      if (t >= from && t <= end) out.push({ t, v: this.values[at]! });
    }
    return out;
  }

  clear(): void {
    this.start = 0;
    this.count = 0;
  }

  private prune(now: number): void {
    const from = now - this.windowMs;
    while (this.count > 0 && this.times[this.start]! < from) {
      this.start = (this.start + 1) % this.capacity;
      this.count--;
    }
  }
}
