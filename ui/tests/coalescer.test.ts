import { describe, expect, it, vi } from "vitest";
import { createDeltaCoalescer } from "../src/chat/coalescer";
import { fakeFrames } from "./helpers";

describe("delta coalescer", () => {
  it("writes all deltas of a frame once, joined, when the frame runs", () => {
    const frames = fakeFrames();
    const write = vi.fn();
    const c = createDeltaCoalescer(write, frames);
    c.push("Hel");
    c.push("lo");
    c.push(", world");
    expect(write).not.toHaveBeenCalled();
    expect(frames.pending).toBe(1);
    frames.tick();
    expect(write).toHaveBeenCalledTimes(1);
    expect(write).toHaveBeenCalledWith("Hello, world");
  });

  it("schedules one frame per batch and none while idle", () => {
    const frames = fakeFrames();
    const write = vi.fn();
    const c = createDeltaCoalescer(write, frames);
    frames.tick();
    expect(write).not.toHaveBeenCalled();
    c.push("a");
    frames.tick();
    c.push("b");
    c.push("c");
    frames.tick();
    frames.tick();
    expect(write.mock.calls).toEqual([["a"], ["bc"]]);
    expect(frames.pending).toBe(0);
  });

  it("flush writes pending text at once and cancels the frame", () => {
    const frames = fakeFrames();
    const write = vi.fn();
    const c = createDeltaCoalescer(write, frames);
    c.push("tail");
    c.flush();
    expect(write).toHaveBeenCalledWith("tail");
    expect(frames.pending).toBe(0);
    frames.tick();
    expect(write).toHaveBeenCalledTimes(1);
  });

  it("cancel drops pending text", () => {
    const frames = fakeFrames();
    const write = vi.fn();
    const c = createDeltaCoalescer(write, frames);
    c.push("gone");
    c.cancel();
    frames.tick();
    c.flush();
    expect(write).not.toHaveBeenCalled();
    expect(c.pending).toBe(false);
  });

  it("ignores empty deltas", () => {
    const frames = fakeFrames();
    const c = createDeltaCoalescer(vi.fn(), frames);
    c.push("");
    expect(frames.pending).toBe(0);
  });
});
