import { vi } from "vitest";

// vi.waitFor polls until its assertion holds; its own default gives up after 1 s,
// which a busy machine can exceed. Here only a hang fails a wait.
const waitFor = vi.waitFor.bind(vi);
vi.waitFor = ((callback, options) =>
  waitFor(callback, typeof options === "number" ? options : { timeout: 30_000, interval: 10, ...options })) as typeof vi.waitFor;

// jsdom has no canvas: charts draw nothing here (drawLineChart handles a null
// context), and tests that check drawing install their own fake context.
HTMLCanvasElement.prototype.getContext = (() => null) as typeof HTMLCanvasElement.prototype.getContext;
